// The deployment as the documentation tells a user to run it (docs/deploy.md, README's pointer to
// it, the workflows): executed where this machine can, against Ceph RGW. One clean checkout (the
// repository's files, as `git clone` gives them) serves every step, in order:
//
//   Terraform       terraform fmt -check on the module, the example and the docs' module block;
//                   terraform validate/init/apply need provider downloads, which this machine
//                   cannot make: no test runs them
//   backup.yml      its run: steps verbatim (npm ci, npm run build, the backup command), twice,
//                   on "runners" with different host names; then with S3BACKUP_REPO set
//   cost-report.yml the cost analysis and the commit-and-push step, to a local bare "origin"
//   ci.yml          the lint job's local steps (typecheck, ShellCheck); not npm audit (it needs
//                   the registry's advisory service: checked statically in infra-workflows) and
//                   not npm test (this suite)
//   deploy.md       "First backup" (npx s3backup …), the Docker section's `docker compose run`
//                   commands (no engine here: carried out as compose would, see composeRun), the
//                   systemd unit's ExecStart (and systemd-analyze verify where installed), the
//                   s3backup.yaml of "s3backup schedule" with `schedule --once`
//
// Stand-ins, and the only differences from the real thing: actions/checkout = the copy;
// actions/setup-node = this Node.js 24 first on PATH; aws-actions/configure-aws-credentials and
// the docs' AWS profiles (which assume IAM roles) = the Ceph test user's keys; S3 = Ceph RGW
// (AWS_ENDPOINT_URL_S3), SNS = a local fake (AWS_ENDPOINT_URL_SNS); npm ci = --offline from a
// copy of the local npm cache (no network in tests); absolute paths of the docs (/srv/data,
// /tmp/restore-check, /opt/s3backup, container paths) = folders under this test's temp dir.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { loadConfigFile } from '../src/config/config.ts';
import {
  checkoutFiles,
  copyFiles,
  HOSTNAME_MECHANISM,
  NODE_DIR,
  npmOfflineHint,
  offlineNpmEnv,
  run,
  type RunResult,
  underHostname,
} from './helpers/deploy.ts';
import { type FakeAws, startFakeAws } from './helpers/fake-aws.ts';
import { read, root as ROOT } from './infra-helpers.ts';
import { createTestBucket, deleteTestBucket, s3TestConfig } from './helpers/s3.ts';

type Obj = Record<string, any>;
interface Step {
  name?: string;
  uses?: string;
  run?: string;
  with?: Obj;
  env?: Obj;
}
interface Job {
  env?: Obj;
  steps?: Step[];
}
interface Workflow {
  file: string;
  on: Obj;
  env?: Obj;
  jobs: Record<string, Job>;
}
const workflow = (file: string): Workflow => {
  const y = parseYaml(read(`.github/workflows/${file}`)) as Obj;
  return { file, on: y.on ?? {}, env: y.env, jobs: y.jobs ?? {} };
};

interface Block {
  lang: string;
  /** The nearest heading above it. */
  heading: string;
  text: string;
}
/** The fenced code blocks of a Markdown file. */
function codeBlocks(md: string): Block[] {
  const out: Block[] = [];
  let heading = '';
  const lines = md.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const h = /^#{1,6}\s+(.*)$/.exec(lines[i]!);
    if (h) heading = h[1]!;
    const f = /^```(\w*)\s*$/.exec(lines[i]!);
    if (!f) continue;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]!); i++) body.push(lines[i]!);
    out.push({ lang: f[1]!, heading, text: body.join('\n') });
  }
  return out;
}
const deployMd = codeBlocks(read('docs/deploy.md'));
/** The one block under a heading matching h (and whose text matches t). */
function block(h: RegExp, lang: string, t?: RegExp): Block {
  const found = deployMd.filter((b) => h.test(b.heading) && b.lang === lang && (!t || t.test(b.text)));
  assert.equal(
    found.length,
    1,
    `docs/deploy.md: expected one ${lang} block under a heading like ${h}${t ? ` containing ${t}` : ''}, found ${found.length}`,
  );
  return found[0]!;
}

// ---------------------------------------------------------------- Terraform

const terraformEnv = { ...process.env, CHECKPOINT_DISABLE: '1', TF_IN_AUTOMATION: '1', TF_CLI_CONFIG_FILE: '/dev/null' };
const hasTerraform = spawnSync('terraform', ['version'], { env: terraformEnv, stdio: 'ignore' }).status === 0;
describe('Terraform (docs/deploy.md "Deploy on AWS")', {
  skip: hasTerraform ? false : 'terraform is not installed (CI installs it with hashicorp/setup-terraform)',
}, () => {
  const tf = (args: string[], cwd: string) => spawnSync('terraform', args, { cwd, env: terraformEnv, encoding: 'utf8' });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'terraform-'));
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test("terraform fmt -check: the module, the example root module and the docs' module block are formatted", () => {
    const r = tf(['fmt', '-check', '-recursive', '-diff', 'infra/terraform'], ROOT);
    assert.equal(r.status, 0, `terraform fmt -check -recursive infra/terraform:\n${r.stdout}${r.stderr}`);
    for (const [i, b] of deployMd.filter((x) => x.lang === 'hcl').entries()) {
      const dir = path.join(tmp, `docs-${i}`);
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, 'main.tf'), `${b.text}\n`);
      const d = tf(['fmt', '-check', '-diff', dir], tmp);
      assert.equal(d.status, 0, `docs/deploy.md hcl block under "${b.heading}":\n${d.stdout}${d.stderr}`);
    }
  });

  test('terraform fmt -check fails on a misformatted file (so the check above can fail)', () => {
    const dir = path.join(tmp, 'bad');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'main.tf'), 'variable "x" {\ndefault="a"\n    type = string\n}\n');
    assert.equal(tf(['fmt', '-check', dir], tmp).status, 3);
  });

  test("the docs' steps: cp terraform.tfvars.example, and every `terraform output` they read exists where they run it", () => {
    const apply = block(/^1\. Apply/, 'bash');
    const cd = /^cd (\S+)$/m.exec(apply.text)?.[1];
    assert.ok(cd && fs.existsSync(path.join(ROOT, cd)), `docs: cd ${cd}`);
    const cp = /^cp (\S+) (\S+)$/m.exec(apply.text);
    assert.ok(cp && fs.existsSync(path.join(ROOT, cd, cp[1]!)), `docs: cp ${cp?.[1]} in ${cd}`);
    const outputs = new Set([...read(`${cd}/outputs.tf`).matchAll(/^output "([\w-]+)"/gm)].map((m) => m[1]!));
    const used = [...read('docs/deploy.md').matchAll(/terraform output -raw ([a-z][a-z0-9_]*)/g)].map((m) => m[1]!);
    assert.ok(used.length >= 5);
    for (const o of used)
      assert.ok(outputs.has(o), `docs/deploy.md reads "terraform output -raw ${o}", which ${cd}/outputs.tf does not have`);
  });
});

// ---------------------------------------------------------------- one checkout, every step

type Contexts = Record<'vars' | 'secrets' | 'inputs' | 'github', Record<string, string>>;

/** The expressions the workflows use: context.name, 'literal', a || b. Anything else fails. */
function evaluate(expr: string, ctx: Contexts): string {
  for (const operand of expr.split('||').map((x) => x.trim())) {
    const literal = /^'((?:[^']|'')*)'$/.exec(operand);
    let v: string;
    if (literal) v = literal[1]!.replace(/''/g, "'");
    else {
      const mm = /^(vars|secrets|inputs|github)\.([A-Za-z_][\w-]*)$/.exec(operand);
      assert.ok(mm, `expression "${operand}" is not one this test can evaluate; teach it`);
      v = ctx[mm[1] as keyof Contexts][mm[2]!] ?? '';
    }
    if (v) return v;
  }
  return '';
}
const substitute = (text: string, ctx: Contexts): string =>
  text.replace(/\$\{\{\s*([\s\S]*?)\s*\}\}/g, (_m, e: string) => evaluate(e, ctx));
const evalEnv = (env: Obj | undefined, ctx: Contexts): Record<string, string> =>
  Object.fromEntries(Object.entries(env ?? {}).map(([k, v]) => [k, substitute(String(v), ctx)]));

/** Compose's variable interpolation: ${V}, ${V:-d}, ${V-d}, ${V:?msg}, ${V?msg}, $$. */
function interpolate(text: string, vars: Record<string, string>): string {
  return text.replace(
    /\$\$|\$\{([A-Za-z_]\w*)(?:(:?)([-?])([^}]*))?\}/g,
    (m, name: string | undefined, colon: string, op: string, arg: string) => {
      if (m === '$$') return '$';
      const v = vars[name!];
      const unset = v === undefined || (colon === ':' && v === '');
      if (op === '-') return unset ? arg : v!;
      if (op === '?') {
        if (unset) throw new Error(`required variable ${name} is missing a value: ${arg}`);
        return v!;
      }
      return v ?? '';
    },
  );
}
const interpolateDeep = (x: unknown, vars: Record<string, string>): any =>
  typeof x === 'string'
    ? interpolate(x, vars)
    : Array.isArray(x)
      ? x.map((y) => interpolateDeep(y, vars))
      : x && typeof x === 'object'
        ? Object.fromEntries(Object.entries(x).map(([k, v]) => [k, interpolateDeep(v, vars)]))
        : x;
const parseEnvFile = (text: string): Record<string, string> =>
  Object.fromEntries(
    text
      .split('\n')
      .filter((l) => /^[A-Za-z_]\w*=/.test(l))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );

describe(`deployment steps, executed (a clean checkout; Ceph RGW for S3; runners and containers: ${HOSTNAME_MECHANISM})`, () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'deploy-'));
  fs.chmodSync(work, 0o755);
  const checkout = path.join(work, 'checkout');
  const origin = path.join(work, 'origin.git');
  const home = path.join(work, 'home');
  const source = path.join(work, 'data');
  let bucket: string;
  let sns: FakeAws;
  let baseEnv: NodeJS.ProcessEnv;
  let installedWith: string | undefined;
  const ceph = () => s3TestConfig();
  after(async () => {
    await sns?.close();
    if (bucket) await deleteTestBucket(bucket);
    fs.rmSync(work, { recursive: true, force: true });
  });

  const git = (args: string[], cwd = checkout) => {
    const r = spawnSync('git', args, {
      cwd,
      encoding: 'utf8',
      env: {
        ...baseEnv,
        GIT_AUTHOR_NAME: 'test',
        GIT_AUTHOR_EMAIL: 't@example.com',
        GIT_COMMITTER_NAME: 'test',
        GIT_COMMITTER_EMAIL: 't@example.com',
      },
    });
    assert.equal(r.status, 0, `git ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  /** The Ceph user's keys under the profile names the docs use (they assume IAM roles on AWS). */
  const writeAwsProfiles = (dir: string, profiles: string[]) => {
    fs.mkdirSync(dir, { recursive: true });
    const c = ceph();
    fs.writeFileSync(
      path.join(dir, 'config'),
      profiles.map((p) => `[${p === 'default' ? p : `profile ${p}`}]\nregion = us-east-1\n`).join('\n'),
    );
    fs.writeFileSync(
      path.join(dir, 'credentials'),
      profiles
        .map((p) => `[${p}]\naws_access_key_id = ${c.credentials.accessKeyId}\naws_secret_access_key = ${c.credentials.secretAccessKey}\n`)
        .join('\n'),
    );
  };
  /** What every AWS SDK call of a step needs beside its credentials: Ceph for S3, the fake for SNS. */
  const endpoints = () => ({ AWS_ENDPOINT_URL_S3: ceph().endpoint, AWS_ENDPOINT_URL_SNS: sns.url, AWS_EC2_METADATA_DISABLED: 'true' });
  /** bash -eo pipefail (GitHub's shell; the docs' blocks are bash) under a host name of its own. */
  const bash = (script: string, o: { cwd: string; env: NodeJS.ProcessEnv; hostname: string }): Promise<RunResult> => {
    const c = underHostname(o.hostname, 'bash', ['--noprofile', '--norc', '-eo', 'pipefail', '-c', script], {
      ...o.env,
      PATH: `${NODE_DIR}${path.delimiter}${o.env.PATH ?? ''}`,
    });
    return run(c.cmd, c.args, { cwd: o.cwd, env: c.env, timeoutMs: 600_000 });
  };
  /** s3backup from this worktree, to look at what the steps left in the bucket. */
  const inspect = (args: string[]): Obj => {
    const c = ceph();
    const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 's3backup.js'), ...args, '--json'], {
      cwd: work,
      encoding: 'utf8',
      env: {
        PATH: process.env.PATH,
        HOME: home,
        AWS_ACCESS_KEY_ID: c.credentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: c.credentials.secretAccessKey,
        AWS_REGION: 'us-east-1',
        AWS_ENDPOINT_URL_S3: c.endpoint,
      },
    });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as Obj;
  };

  before(async () => {
    bucket = await createTestBucket('deploy');
    sns = await startFakeAws();
    fs.mkdirSync(home, { recursive: true });
    baseEnv = offlineNpmEnv(work, {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      TMPDIR: process.env.TMPDIR ?? os.tmpdir(),
      LANG: 'C.UTF-8',
    });
    copyFiles(checkoutFiles(), checkout);
    git(['init', '-q', '-b', 'main']);
    git(['add', '-A']);
    git(['commit', '-q', '-m', 'checkout']);
    git(['init', '-q', '--bare', origin], work);
    git(['remote', 'add', 'origin', origin]);
    git(['push', '-q', 'origin', 'main']);
    fs.mkdirSync(path.join(source, 'sub'), { recursive: true });
    for (let i = 0; i < 10; i++) fs.writeFileSync(path.join(source, 'sub', `f${i}.txt`), `file ${i}\n`.repeat(500));
    spawnSync('chmod', ['-R', 'a+rX', work]);
  });

  // ---------------------------------------------------------------- the workflows

  /** One job of a workflow on a runner with this host name; what each run: step printed. */
  async function runJob(
    w: Workflow,
    o: { runner: string; ctx: Contexts; skipInstall?: boolean },
  ): Promise<{ step: string; stdout: string; stderr: string }[]> {
    assert.equal(Object.keys(w.jobs).length, 1, `${w.file}: one job expected`);
    const [jobName, job] = Object.entries(w.jobs)[0]!;
    const github = { workspace: checkout, run_id: String(Date.now()), repository: 'owner/repo', ref_name: 'main', ...o.ctx.github };
    const ctx = { ...o.ctx, github };
    let actionEnv: Record<string, string> = {};
    const outputs: { step: string; stdout: string; stderr: string }[] = [];
    for (const [i, step] of (job.steps ?? []).entries()) {
      const label = `${w.file} ${jobName} step ${step.name ?? step.uses ?? i}`;
      if (step.uses) {
        const action = step.uses.split('@')[0];
        if (action === 'actions/checkout') continue; // the checkout is there
        if (action === 'actions/setup-node') {
          assert.equal(
            String(step.with?.['node-version']),
            process.versions.node.split('.')[0],
            `${label}: this test runs Node.js ${process.versions.node}`,
          );
          continue;
        }
        if (action === 'aws-actions/configure-aws-credentials') {
          const c = ceph();
          const region = substitute(String(step.with?.['aws-region'] ?? ''), ctx);
          assert.ok(region, `${label}: aws-region is empty`);
          assert.ok(substitute(String(step.with?.['role-to-assume'] ?? ''), ctx), `${label}: role-to-assume is empty`);
          actionEnv = {
            AWS_ACCESS_KEY_ID: c.credentials.accessKeyId,
            AWS_SECRET_ACCESS_KEY: c.credentials.secretAccessKey,
            AWS_REGION: region,
            AWS_DEFAULT_REGION: region,
            ...endpoints(),
          };
          continue;
        }
        assert.fail(`${label}: no stand-in for action ${action} in this test`);
      }
      const script = substitute(step.run ?? '', ctx);
      if (/^\s*npm ci\s*$/m.test(script)) {
        if (o.skipInstall) {
          assert.equal(script, installedWith, `${label}: a different install than the one this checkout had`);
          continue;
        }
        installedWith = script;
      }
      const env = {
        ...baseEnv,
        CI: 'true',
        GITHUB_ACTIONS: 'true',
        GITHUB_WORKSPACE: checkout,
        GITHUB_REF_NAME: github.ref_name,
        GITHUB_RUN_ID: github.run_id,
        GITHUB_REPOSITORY: github.repository,
        ...evalEnv(w.env, ctx),
        ...evalEnv(job.env, ctx),
        ...actionEnv,
        ...evalEnv(step.env, ctx),
      };
      const r = await bash(script, { cwd: checkout, env, hostname: o.runner });
      assert.equal(r.code, 0, `${label} failed${/npm ci/.test(script) ? ` (${npmOfflineHint})` : ''}:\n${r.stdout}\n${r.stderr}`);
      outputs.push({ step: step.name ?? String(i), stdout: r.stdout, stderr: r.stderr });
    }
    return outputs;
  }

  const ctxFor = (vars: Record<string, string>): Contexts => ({
    vars: {
      AWS_REGION: 'us-east-1',
      BUCKET_NAME: bucket,
      S3BACKUP_REPO: '',
      SNS_TOPIC_ARN: 'arn:aws:sns:us-east-1:123456789012:s3backup-notifications',
      AWS_BACKUP_ROLE_ARN: 'arn:aws:iam::123456789012:role/s3backup-backup',
      AWS_COST_ROLE_ARN: 'arn:aws:iam::123456789012:role/s3backup-cost',
      ...vars,
    },
    secrets: { SLACK_WEBHOOK_URL: '' },
    inputs: { source: '' },
    github: {},
  });

  test('backup.yml, twice, on runners with different host names: npm ci and build, then the backup to s3://$BUCKET_NAME; the second is incremental', {
    timeout: 900_000,
  }, async () => {
    const w = workflow('backup.yml');
    const ctx = ctxFor({ BACKUP_SOURCE_DIR: source });
    const first = await runJob(w, { runner: 'fv-az101-1', ctx });
    assert.ok(fs.existsSync(path.join(checkout, 'dist', 'cli', 'main.js')), 'npm run build made dist/');
    assert.match(first.at(-1)!.stdout, /^backup \S+ \(full\) saved to s3:\/\//m);
    fs.writeFileSync(path.join(source, 'changed.txt'), 'new file\n');
    const second = await runJob(w, { runner: 'fv-az202-2', ctx, skipInstall: true });
    assert.match(second.at(-1)!.stdout, /^backup \S+ \(incremental\) saved to s3:\/\//m);
    assert.match(second.at(-1)!.stdout, /1 new, 0 changed, 10 unchanged/);
    const listed = inspect(['list', '--repo', `s3://${bucket}`]);
    assert.equal(listed.backups.length, 2);
    const host = substitute(String(Object.values(w.jobs)[0]!.env?.S3BACKUP_HOST), ctx);
    assert.deepEqual(
      listed.backups.map((b: { host: string }) => b.host),
      [host, host],
    );
    assert.equal(listed.hostWarning, undefined);
    // SNS_TOPIC_ARN is set: each run published its result.
    assert.deepEqual(
      sns.publishes.map((p) => p.TopicArn),
      [ctx.vars.SNS_TOPIC_ARN, ctx.vars.SNS_TOPIC_ARN],
    );
    // With the repository variable S3BACKUP_REPO (Terraform's repository_prefix), it goes there.
    const prefixed = await runJob(w, {
      runner: 'fv-az303-3',
      ctx: ctxFor({ BACKUP_SOURCE_DIR: source, S3BACKUP_REPO: `s3://${bucket}/team` }),
      skipInstall: true,
    });
    assert.match(prefixed.at(-1)!.stdout, new RegExp(`\\(full\\) saved to s3://${bucket}/team`));
  });

  test('cost-report.yml: the analysis to reports/cost_report.csv, committed and pushed by github-actions[bot]', {
    timeout: 600_000,
  }, async () => {
    const w = workflow('cost-report.yml');
    assert.ok(installedWith, 'runs after backup.yml, in its checkout');
    const before = git(['rev-parse', 'main'], origin).trim();
    const outputs = await runJob(w, { runner: 'fv-az404-4', ctx: ctxFor({}), skipInstall: true });
    assert.match(outputs.find((o) => /cost/i.test(o.step))!.stdout, new RegExp(`cost of s3://${bucket} \\(listing`));
    assert.notEqual(git(['rev-parse', 'main'], origin).trim(), before, 'a commit was pushed to origin');
    const pushed = git(['log', '-1', '--format=%an <%ae>%n%s', 'main'], origin).trim().split('\n');
    assert.equal(pushed[0], 'github-actions[bot] <41898282+github-actions[bot]@users.noreply.github.com>');
    assert.match(pushed[1]!, /^chore\(cost\): weekly cost report \d{4}-\d{2}-\d{2}$/);
    const csv = git(['show', 'main:reports/cost_report.csv'], origin).trim().split('\n');
    assert.equal(csv.length, 2, "a header and this run's row");
    assert.equal(csv[1]!.split(',')[1], `s3://${bucket}`);
  });

  test("ci.yml's lint job, local steps (typecheck, ShellCheck) in the checkout", { timeout: 600_000 }, async () => {
    const w = workflow('ci.yml');
    const lint = Object.values(w.jobs).find((j) => (j.steps ?? []).some((s) => /npm run typecheck/.test(s.run ?? '')))!;
    const ran: string[] = [];
    for (const step of lint.steps ?? []) {
      // npm ci: done; npm audit: needs the registry's advisory service (no network in tests).
      if (!step.run || /^\s*npm ci\s*$/m.test(step.run) || /\bnpm audit\b/.test(step.run)) continue;
      const r = await bash(step.run, { cwd: checkout, env: { ...baseEnv, CI: 'true' }, hostname: 'fv-az505-5' });
      assert.equal(r.code, 0, `ci.yml step ${step.name}:\n${r.stdout}\n${r.stderr}`);
      ran.push(step.name ?? '');
    }
    assert.deepEqual(ran, ['Typecheck', 'ShellCheck']);
  });

  // ---------------------------------------------------------------- docs/deploy.md

  test('deploy.md "3. First backup": the profile, then npx s3backup backup, list, verify, restore', { timeout: 300_000 }, async () => {
    const ini = block(/^3\. First backup/, 'ini');
    const profile = /^\[profile ([\w-]+)\]/m.exec(ini.text)?.[1];
    const steps = block(/^3\. First backup/, 'bash');
    assert.equal(/export AWS_PROFILE=(\S+)/.exec(steps.text)?.[1], profile, 'the block uses the profile the docs define');
    writeAwsProfiles(path.join(home, '.aws'), [profile!]);
    fs.cpSync(source, path.join(checkout, 'my-data'), { recursive: true });
    const restoreCheck = path.join(work, 'restore-check');
    assert.match(steps.text, /\/tmp\/restore-check/);
    const script = steps.text.replaceAll('/tmp/restore-check', restoreCheck);
    // The variables of "2. Outputs → environment".
    const env = {
      ...baseEnv,
      BUCKET_NAME: bucket,
      AWS_REGION: 'us-east-1',
      SNS_TOPIC_ARN: 'arn:aws:sns:us-east-1:123456789012:s3backup-notifications',
      ...endpoints(),
    };
    const r = await bash(script, { cwd: checkout, env, hostname: 'workstation' });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^backup \\S+ \\(full\\) saved to s3://${bucket}$`, 'm'));
    assert.match(r.stdout, /looks intact/);
    assert.match(r.stdout, new RegExp(`restored backup \\S+ to ${restoreCheck}`));
    assert.equal(fs.readFileSync(path.join(restoreCheck, 'my-data', 'sub', 'f3.txt'), 'utf8'), 'file 3\n'.repeat(500));
  });

  /**
   * `docker compose run [--rm] [-v SRC:DST] [--user U] [--entrypoint E] SERVICE [ARGS]` as compose
   * would run it, minus the container: the service's environment (env_file, then environment,
   * interpolated from .env), its hostname, its volumes (container paths mapped to the host
   * folders mounted there; named volumes to folders of their own) and the image's entrypoint
   * (the checkout's bin/s3backup.js, which the image runs; test/infra-docker.test.ts runs the
   * image's own tree).
   */
  async function composeRun(line: string, o: { dotenv: Record<string, string>; volumesDir: string }): Promise<RunResult> {
    const words = [...line.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => (m[1] ?? m[2]!).replaceAll('$PWD', checkout));
    assert.deepEqual(words.slice(0, 3), ['docker', 'compose', 'run'], line);
    const compose = interpolateDeep(parseYaml(fs.readFileSync(path.join(checkout, 'docker-compose.yml'), 'utf8')), {
      ...o.dotenv,
      HOME: home,
    }) as Obj;
    const mounts: [string, string][] = [];
    let entrypoint: string | undefined;
    let i = 3;
    for (; i < words.length && words[i]!.startsWith('-'); i++) {
      const w = words[i]!;
      if (w === '--rm') continue;
      if (w === '-v') mounts.push(words[++i]!.split(':').slice(0, 2).reverse() as [string, string]);
      else if (w === '--entrypoint') entrypoint = words[++i];
      else if (w === '--user') i++;
      else assert.fail(`docker compose run option ${w} not known to this test`);
    }
    const service = compose.services[words[i]!] as Obj;
    assert.ok(service, `no service ${words[i]}`);
    const args: string[] = i + 1 < words.length ? words.slice(i + 1) : service.command;
    for (const v of service.volumes ?? []) {
      const [src, dst] = String(v).split(':') as [string, string];
      const host = src.startsWith('./') ? path.join(checkout, src) : src.startsWith('/') ? src : path.join(o.volumesDir, src);
      fs.mkdirSync(host, { recursive: true });
      mounts.push([dst, host]);
    }
    mounts.sort((a, b) => b[0].length - a[0].length);
    const mapPath = (s: string) => {
      for (const [dst, host] of mounts) if (s === dst || s.startsWith(`${dst}/`)) return host + s.slice(dst.length);
      return s;
    };
    const env: Record<string, string> = {};
    for (const f of [service.env_file ?? []].flat()) Object.assign(env, parseEnvFile(fs.readFileSync(path.join(checkout, f), 'utf8')));
    Object.assign(env, service.environment ?? {});
    for (const k of Object.keys(env)) env[k] = mapPath(env[k]!);
    const runEnv = { ...baseEnv, ...env, HOME: home, ...endpoints() };
    const hostname = String(service.hostname ?? '0123456789ab'); // compose's default: the container id
    const [cmd, argv] = entrypoint
      ? [entrypoint, args.map(mapPath)]
      : [process.execPath, [path.join(checkout, 'bin', 's3backup.js'), ...args.map(mapPath)]];
    const c = underHostname(hostname, cmd, argv, runEnv);
    return run(c.cmd, c.args, { cwd: checkout, env: c.env });
  }

  test('deploy.md "Run in Docker": .env from .env.example, then each `docker compose run` the docs give (no engine: as compose would run them)', {
    timeout: 600_000,
  }, async () => {
    // cp .env.example .env, then the edit the docs ask for.
    const example = parseEnvFile(read('.env.example'));
    const dotenv: Record<string, string> = {
      ...example,
      BUCKET_NAME: bucket,
      AWS_REGION: 'us-east-1',
      BACKUP_SOURCE_DIR: source,
      SNS_TOPIC_ARN: 'arn:aws:sns:us-east-1:123456789012:s3backup-notifications',
    };
    fs.writeFileSync(
      path.join(checkout, '.env'),
      `${Object.entries(dotenv)
        .map(([k, v]) => `${k}=${v}`)
        .join('\n')}\n`,
    );
    writeAwsProfiles(path.join(home, '.aws'), [dotenv.BACKUP_AWS_PROFILE!, dotenv.COST_AWS_PROFILE!]);
    // Compose refuses to start without a fixed host name.
    const { S3BACKUP_HOST: _h, ...noHost } = dotenv;
    assert.throws(
      () => interpolateDeep(parseYaml(read('docker-compose.yml')), { ...noHost, HOME: home }),
      /S3BACKUP_HOST is missing a value: set S3BACKUP_HOST in \.env/,
    );

    // The section's bash blocks, and the commands its notes give inline.
    const section = /\n## Run in Docker\n([\s\S]*?)\n## /.exec(read('docs/deploy.md'))![1]!;
    const inline = [...section.matchAll(/`(docker compose run [^`]*\b(?:backup|cost-analyzer)\b[^`]*)`/g)].map((m) => m[1]!);
    const lines = [
      ...deployMd
        .filter((b) => b.heading === 'Run in Docker' && b.lang === 'bash')
        .flatMap((b) => b.text.split('\n'))
        .map((l) => l.replace(/\s+#.*$/, '').trim())
        .filter((l) => /^docker compose /.test(l)),
      ...inline,
    ];
    const runs = lines.filter((l) => /^docker compose run /.test(l));
    assert.ok(runs.length >= 4, `expected the docs' docker compose run commands, found ${runs.join('; ')}`);
    for (const l of lines.filter((x) => !runs.includes(x)))
      assert.match(l, /^docker compose (build|pull)\b/, `${l}: not known to this test`);
    const volumesDir = path.join(work, 'volumes');
    const results = new Map<string, RunResult>();
    for (const l of runs) {
      if (/ restore /.test(l)) fs.mkdirSync(path.join(checkout, 'restored'), { recursive: true }); // the docs' mkdir -p restored
      const r = await composeRun(l, { dotenv, volumesDir });
      assert.equal(r.code, 0, `${l}:\n${r.stdout}\n${r.stderr}`);
      results.set(l, r);
    }
    // The next day's run is a new container: the backup is incremental all the same.
    fs.writeFileSync(path.join(source, 'next-day.txt'), 'next\n');
    const again = await composeRun('docker compose run --rm backup', { dotenv, volumesDir });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /\(incremental\) saved to/);

    const get = (re: RegExp) => [...results].find(([l]) => re.test(l))?.[1];
    assert.match(get(/run --rm backup$/)!.stdout, new RegExp(`^backup \\S+ \\(\\w+\\) saved to s3://${bucket}`, 'm'));
    assert.match(get(/cost-analyzer/)!.stdout, new RegExp(`cost of s3://${bucket}`));
    assert.ok(
      fs.readFileSync(path.join(checkout, 'reports', 'cost_report.csv'), 'utf8').includes(`s3://${bucket}`),
      'the cost report CSV in ./reports',
    );
    assert.match(get(/backup list$/)!.stdout, /backup\(s\) of \d+ group\(s\) in s3:\/\//);
    assert.match(get(/ restore /)!.stdout, /restored backup/);
    assert.ok(fs.existsSync(path.join(checkout, 'restored', path.basename(source), 'sub', 'f0.txt')), 'restored into ./restored');
    assert.match(get(/--entrypoint tail/)!.stdout, /backup \S+ done/);
    const listed = inspect(['list', '--repo', `s3://${bucket}`]);
    const composed = listed.backups.filter(
      (b: { sources: string[]; host: string }) => b.sources.includes(source) && b.host === dotenv.S3BACKUP_HOST,
    );
    assert.ok(composed.length >= 2, 'the compose backups are recorded under S3BACKUP_HOST');
  });

  test('deploy.md "GitHub Actions": the variables the docs set are the ones the workflows read', () => {
    const setup = block(/^GitHub Actions/, 'bash');
    const set = new Set([...setup.text.matchAll(/gh variable set ([A-Z_]+)/g)].map((m) => m[1]!));
    const secrets = new Set([...setup.text.matchAll(/gh secret set ([A-Z_]+)/g)].map((m) => m[1]!));
    const texts = ['backup.yml', 'cost-report.yml'].map((f) => read(`.github/workflows/${f}`)).join('\n');
    const used = new Set([...texts.matchAll(/vars\.([A-Z_]+)/g)].map((m) => m[1]!));
    const usedSecrets = new Set([...texts.matchAll(/secrets\.([A-Z_]+)/g)].map((m) => m[1]!));
    assert.deepEqual(
      [...used].filter((v) => !set.has(v)),
      [],
      'variables the workflows read but the docs do not set',
    );
    assert.deepEqual(
      [...set].filter((v) => !used.has(v)),
      [],
      'variables the docs set but no workflow reads',
    );
    assert.deepEqual(
      [...usedSecrets].filter((v) => !secrets.has(v)),
      [],
    );
    const dispatch = /gh workflow run ([\w.-]+) -f (\w+)=/.exec(setup.text);
    assert.ok(dispatch);
    assert.ok(workflow(dispatch[1]!).on.workflow_dispatch?.inputs?.[dispatch[2]!], `${dispatch[1]} has no input ${dispatch[2]}`);
  });

  const units = () => {
    const find = (name: string) => deployMd.find((b) => b.lang === 'ini' && b.text.startsWith(`# /etc/systemd/system/${name}`));
    const service = find('s3backup.service');
    const timer = find('s3backup.timer');
    assert.ok(service && timer, 'docs/deploy.md: the s3backup.service and s3backup.timer blocks');
    return { service: service.text, timer: timer.text };
  };
  const unitDir = path.join(work, 'systemd');
  /** The unit with /opt/s3backup = the checkout (git clone + npm ci && npm run build, as the docs say). */
  const installedUnit = (text: string) => text.replaceAll('/opt/s3backup', checkout);

  test('deploy.md "systemd timer": ExecStart runs as the docs install it (its own Node.js 24 from npm ci), with the EnvironmentFile they describe', {
    timeout: 300_000,
  }, async () => {
    const { service } = units();
    const unit = installedUnit(service);
    const exec = /^ExecStart=(.+)$/m.exec(unit)![1]!.split(/\s+/);
    const nodeBin = exec[0]!;
    assert.ok(fs.existsSync(nodeBin), `${nodeBin}: the docs say npm ci brings Node.js 24 there`);
    assert.match(spawnSync(nodeBin, ['--version'], { encoding: 'utf8' }).stdout, /^v24\./);
    // Environment= and the EnvironmentFile (/etc/s3backup/env: BUCKET_NAME, AWS_REGION, SNS_TOPIC_ARN, AWS_PROFILE=s3backup).
    const prose = read('docs/deploy.md');
    const para = /`\/etc\/s3backup\/env` holds([\s\S]*?)\(with/.exec(prose)?.[1] ?? '';
    const fileVars = [...para.matchAll(/`([A-Z_]+)=[^`]*`/g)].map((m) => m[1]!);
    assert.deepEqual(fileVars.sort(), ['AWS_PROFILE', 'AWS_REGION', 'BUCKET_NAME', 'SNS_TOPIC_ARN']);
    const profile = /`AWS_PROFILE=([\w-]+)`/.exec(prose)![1]!;
    const mapped = (p: string) => (p.startsWith('/') && !p.startsWith(checkout) ? path.join(work, 'root', p) : p);
    const environment = Object.fromEntries(
      [...unit.matchAll(/^Environment=(.+)$/gm)].flatMap((m) =>
        m[1]!.split(/\s+/).map((kv) => [kv.slice(0, kv.indexOf('=')), mapped(kv.slice(kv.indexOf('=') + 1))]),
      ),
    );
    const serviceHome = environment.HOME!;
    writeAwsProfiles(path.join(serviceHome, '.aws'), [profile]);
    fs.cpSync(source, mapped('/srv/data'), { recursive: true });
    const env = {
      PATH: '/usr/bin:/bin',
      BUCKET_NAME: bucket,
      AWS_REGION: 'us-east-1',
      SNS_TOPIC_ARN: 'arn:aws:sns:us-east-1:123456789012:s3backup-notifications',
      AWS_PROFILE: profile,
      ...environment,
      ...endpoints(),
    };
    const r = await run(nodeBin, exec.slice(1).map(mapped), { cwd: '/', env });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, new RegExp(`\\) saved to s3://${bucket}$`, 'm'));
    assert.ok(fs.existsSync(path.join(environment.S3BACKUP_LOG_DIR!, 'backup.log')), 'logs in S3BACKUP_LOG_DIR');
  });

  const hasSystemdAnalyze = spawnSync('systemd-analyze', ['--version'], { stdio: 'ignore' }).status === 0;
  test('deploy.md "systemd timer": systemd-analyze verify accepts both units; the timer fires daily at 02:00 UTC', {
    skip: hasSystemdAnalyze ? false : 'systemd-analyze is not installed here',
  }, () => {
    const { service, timer } = units();
    fs.mkdirSync(unitDir, { recursive: true });
    // User=s3backup is made by the docs' useradd, EnvironmentFile by the admin: neither is checked by verify.
    fs.writeFileSync(path.join(unitDir, 's3backup.service'), installedUnit(service));
    fs.writeFileSync(path.join(unitDir, 's3backup.timer'), timer);
    const v = spawnSync('systemd-analyze', ['verify', path.join(unitDir, 's3backup.timer'), path.join(unitDir, 's3backup.service')], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(v.status, 0, v.stdout + v.stderr);
    const cal = /^OnCalendar=(.+)$/m.exec(timer)![1]!;
    const c = spawnSync('systemd-analyze', ['calendar', cal], { encoding: 'utf8' });
    assert.equal(c.status, 0, c.stderr);
    assert.match(c.stdout, /Next elapse: \w+ \d{4}-\d{2}-\d{2} 02:00:00 UTC/);
  });

  test('deploy.md "s3backup schedule": its s3backup.yaml is valid, and `schedule --once backup` / `--once cost` run with it', {
    timeout: 300_000,
  }, async () => {
    const yamlBlock = block(/s3backup schedule/, 'yaml', /^# s3backup\.yaml/);
    const original = path.join(work, 's3backup.docs.yaml');
    fs.writeFileSync(original, yamlBlock.text);
    const cfg = loadConfigFile(original); // an unknown or misplaced key is an error here
    assert.ok(cfg.schedule?.backup && cfg.sources?.length);
    const mapped = (p: string) => path.join(work, 'root', p);
    const text = yamlBlock.text
      .replace(/^repository: s3:\/\/[^/\s]+/m, `repository: s3://${bucket}`)
      .replace(/(^|[\s[])(\/(?:srv|var)\/[\w/.-]+)/gm, (_m, pre: string, p: string) => `${pre}${mapped(p)}`);
    fs.cpSync(source, mapped('/srv/data'), { recursive: true, force: true });
    const file = path.join(work, 's3backup.yaml');
    fs.writeFileSync(file, text);
    writeAwsProfiles(path.join(home, '.aws'), ['default']);
    const once = [...read('docs/deploy.md').matchAll(/^npx s3backup schedule --once backup --config (\S+)$/gm)];
    assert.equal(once.length, 1, 'the docs run `npx s3backup schedule --once backup --config FILE`');
    for (const job of ['backup', 'cost']) {
      const r = await bash(`npx s3backup schedule --once ${job} --config "${file}"`, {
        cwd: checkout,
        env: { ...baseEnv, ...endpoints() },
        hostname: 'server1',
      });
      assert.equal(r.code, 0, `schedule --once ${job}:\n${r.stdout}\n${r.stderr}`);
    }
    const listed = inspect(['list', '--repo', yamlBlock.text.match(/^repository: (\S+)/m)![1]!.replace(/^s3:\/\/[^/]+/, `s3://${bucket}`)]);
    assert.equal(listed.backups.length, 1);
    assert.equal(listed.backups[0].host, 'server1');
    assert.ok(fs.readFileSync(mapped(cfg.cost!.saveCsv!), 'utf8').split('\n').length >= 2, 'the cost job appended to cost.saveCsv');
  });

  test('deploy.md "s3backup schedule": the compose service it gives has the backup service\'s hostname, environment and mounts', () => {
    const snippet = block(/s3backup schedule/, 'yaml', /^\s+scheduler:/);
    // As compose sees them with the .env of .env.example.
    const vars = { ...parseEnvFile(read('.env.example')), HOME: '/home/me' };
    const scheduler = interpolateDeep(parseYaml(snippet.text), vars).scheduler as Obj;
    const backup = interpolateDeep(parseYaml(read('docker-compose.yml')), vars).services.backup as Obj;
    for (const k of ['image', 'hostname', 'env_file', 'environment', 'volumes'])
      assert.deepEqual(scheduler[k], backup[k], `scheduler.${k} differs from the backup service's`);
    assert.equal(scheduler.command[0], 'schedule');
  });
});
