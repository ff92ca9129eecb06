// Static checks of the Terraform module in infra/terraform (terraform/tofu cannot run here):
// every .tf file is parsed with @cdktf/hcl2json, and the security and lifecycle properties
// the module promises are asserted on the parsed configuration.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { parse } from '@cdktf/hcl2json';
import { exists, list, read } from './infra-helpers.ts';

type Obj = Record<string, any>;
interface Module {
  dir: string;
  texts: Map<string, string>;
  resource: Record<string, Record<string, Obj>>;
  data: Record<string, Record<string, Obj>>;
  variable: Record<string, Obj>;
  output: Record<string, Obj>;
  locals: Obj;
  module: Record<string, Obj>;
  provider: Record<string, Obj[]>;
  terraform: Obj[];
}

const TF_DIR = 'infra/terraform';
const EXAMPLES_DIR = `${TF_DIR}/examples`;

async function loadModule(dir: string): Promise<Module> {
  const m: Module = {
    dir,
    texts: new Map(),
    resource: {},
    data: {},
    variable: {},
    output: {},
    locals: {},
    module: {},
    provider: {},
    terraform: [],
  };
  const files = list(dir).filter((f) => f.endsWith('.tf'));
  assert.ok(files.length > 0, `no .tf files in ${dir}`);
  for (const f of files) {
    const text = read(`${dir}/${f}`);
    m.texts.set(f, text);
    const j = await parse(f, text);
    for (const [kind, byType] of Object.entries((j.resource ?? {}) as Obj)) {
      for (const [name, blocks] of Object.entries(byType as Obj)) {
        m.resource[kind] ??= {};
        assert.ok(!m.resource[kind][name], `${dir}: resource ${kind}.${name} declared twice`);
        m.resource[kind][name] = (blocks as Obj[])[0]!;
      }
    }
    for (const [kind, byType] of Object.entries((j.data ?? {}) as Obj)) {
      for (const [name, blocks] of Object.entries(byType as Obj)) {
        m.data[kind] ??= {};
        assert.ok(!m.data[kind][name], `${dir}: data ${kind}.${name} declared twice`);
        m.data[kind][name] = (blocks as Obj[])[0]!;
      }
    }
    for (const key of ['variable', 'output', 'module'] as const) {
      for (const [name, blocks] of Object.entries((j[key] ?? {}) as Obj)) {
        assert.ok(!m[key][name], `${dir}: ${key} ${name} declared twice`);
        m[key][name] = (blocks as Obj[])[0]!;
      }
    }
    for (const l of (j.locals ?? []) as Obj[]) {
      for (const [name, value] of Object.entries(l)) {
        assert.ok(!(name in m.locals), `${dir}: local ${name} declared twice`);
        m.locals[name] = value;
      }
    }
    for (const [name, blocks] of Object.entries((j.provider ?? {}) as Obj)) {
      m.provider[name] = [...(m.provider[name] ?? []), ...(blocks as Obj[])];
    }
    m.terraform.push(...((j.terraform ?? []) as Obj[]));
  }
  return m;
}

/** Blocks are lists in hcl2json's output; `one()` returns the single block. */
function one(blocks: unknown, what: string): Obj {
  assert.ok(Array.isArray(blocks) && blocks.length === 1, `${what}: expected exactly one block, got ${JSON.stringify(blocks)}`);
  return blocks[0] as Obj;
}
const many = (blocks: unknown): Obj[] => (Array.isArray(blocks) ? (blocks as Obj[]) : []);

/** Static and dynamic blocks of one kind (dynamic ones are their `content`), with their for_each. */
function blocksOf(parent: Obj, kind: string): { block: Obj; forEach?: string }[] {
  const out: { block: Obj; forEach?: string }[] = many(parent[kind]).map((block) => ({ block }));
  for (const d of many(parent.dynamic?.[kind])) {
    for (const c of many(d.content)) out.push({ block: c, forEach: d.for_each as string });
  }
  return out;
}

const ref = (expr: string): string => `\${${expr}}`;
const asList = (v: unknown): string[] => (Array.isArray(v) ? (v as string[]) : [v as string]);

interface Statement {
  doc: string;
  sid: string;
  effect: string;
  actions: string[];
  resources: string[];
  principals: Obj[];
  conditions: Obj[];
  raw: Obj;
  forEach?: string;
}

function statementsOf(m: Module, docName: string): Statement[] {
  const doc = m.data.aws_iam_policy_document?.[docName];
  assert.ok(doc, `data.aws_iam_policy_document.${docName} is not declared`);
  return blocksOf(doc, 'statement').map(({ block, forEach }) => ({
    doc: docName,
    sid: block.sid as string,
    effect: (block.effect as string | undefined) ?? 'Allow',
    actions: asList(block.actions ?? []),
    resources: asList(block.resources ?? []),
    principals: blocksOf(block, 'principals').map((b) => b.block),
    conditions: blocksOf(block, 'condition').map((b) => b.block),
    raw: block,
    forEach,
  }));
}

function allStatements(m: Module): Statement[] {
  return Object.keys(m.data.aws_iam_policy_document ?? {}).flatMap((d) => statementsOf(m, d));
}

/** The policy document a `${data.aws_iam_policy_document.NAME[0].json}` expression names. */
function docNameOf(expr: unknown, what: string): string {
  const mm = /^\$\{data\.aws_iam_policy_document\.([a-z0-9_]+)(?:\[0\])?\.json\}$/.exec(String(expr));
  assert.ok(mm, `${what} must be a data.aws_iam_policy_document's json, got ${String(expr)}`);
  return mm[1]!;
}

const hasCondition = (s: Statement, test: string, variable: string, values: string[]): boolean =>
  s.conditions.some((c) => c.test === test && c.variable === variable && JSON.stringify(c.values) === JSON.stringify(values));

/** Every `${…}` interpolation in a parsed value, recursively. */
function expressions(v: unknown, out: string[] = []): string[] {
  if (typeof v === 'string') {
    for (const mm of v.matchAll(/\$\{((?:[^{}]|\{[^{}]*\})*)\}/g)) out.push(mm[1]!);
  } else if (Array.isArray(v)) {
    for (const x of v) expressions(x, out);
  } else if (v && typeof v === 'object') {
    for (const x of Object.values(v)) expressions(x, out);
  }
  return out;
}

/** Strips string literals from an expression so that references are found only in code. */
const code = (expr: string): string => expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');

let root: Module;
let example: Module;

before(async () => {
  root = await loadModule(TF_DIR);
  const examples = list(EXAMPLES_DIR).filter((d) => list(`${EXAMPLES_DIR}/${d}`).some((f) => f.endsWith('.tf')));
  assert.ok(examples.includes('minimal'), `${EXAMPLES_DIR}/minimal must hold a root module`);
  example = await loadModule(`${EXAMPLES_DIR}/minimal`);
});

describe('terraform module: structure', () => {
  test('requires Terraform >= 1.5 and the AWS provider >= 5, with an aws.replica alias', () => {
    const tf = root.terraform;
    const rv = tf.map((t) => t.required_version).find(Boolean) as string;
    const mm = /^>=\s*(\d+)\.(\d+)/.exec(rv ?? '');
    assert.ok(mm, `required_version must be ">= 1.5…", got ${rv}`);
    assert.ok(Number(mm[1]) > 1 || Number(mm[2]) >= 5, `required_version ${rv} allows Terraform < 1.5`);
    const aws = tf
      .flatMap((t) => many(t.required_providers))
      .map((p) => p.aws)
      .find(Boolean) as Obj;
    assert.equal(aws?.source, 'hashicorp/aws');
    assert.match(String(aws?.version), /^>=\s*[5-9]/, 'the AWS provider constraint must be >= 5');
    assert.deepEqual(aws.configuration_aliases, [ref('aws.replica')]);
  });

  test('every variable is described and typed; every variable is used and every used variable declared', () => {
    for (const mod of [root, example]) {
      const all = [...mod.texts.values()].join('\n');
      for (const [name, v] of Object.entries(mod.variable)) {
        assert.ok(
          typeof v.description === 'string' && v.description.trim().length > 10,
          `${mod.dir}: variable ${name} needs a description`,
        );
        assert.ok(typeof v.type === 'string' && /^\$\{.+\}$/.test(v.type), `${mod.dir}: variable ${name} needs a type`);
        // Used outside its own declaration (validation blocks mention it too).
        const uses = all.match(new RegExp(`\\bvar\\.${name}\\b`, 'g'))?.length ?? 0;
        const inOwnValidation = JSON.stringify(v).match(new RegExp(`\\bvar\\.${name}\\b`, 'g'))?.length ?? 0;
        assert.ok(uses > inOwnValidation, `${mod.dir}: variable ${name} is declared but never used`);
      }
      for (const mm of all.matchAll(/\bvar\.([a-z0-9_]+)/g)) {
        assert.ok(mm[1]! in mod.variable, `${mod.dir}: var.${mm[1]} is used but not declared`);
      }
    }
  });

  test('every reference to a resource, data source or local is declared', () => {
    const exprs = expressions({ r: root.resource, d: root.data, o: root.output, l: root.locals }).map(code);
    assert.ok(exprs.length > 50, 'expected many expressions in the module');
    for (const e of exprs) {
      for (const mm of e.matchAll(/(?<![\w.])local\.([a-z0-9_]+)/g)) {
        assert.ok(mm[1]! in root.locals, `local.${mm[1]} is used but not declared (in \${${e}})`);
      }
      for (const mm of e.matchAll(/(?<![\w.])data\.([a-z0-9_]+)\.([a-z0-9_]+)/g)) {
        assert.ok(root.data[mm[1]!]?.[mm[2]!], `data.${mm[1]}.${mm[2]} is used but not declared`);
      }
      for (const mm of e.matchAll(/(?<![\w.])(aws_[a-z0-9_]+)\.([a-z0-9_]+)/g)) {
        assert.ok(root.resource[mm[1]!]?.[mm[2]!], `${mm[1]}.${mm[2]} is used but not declared (in \${${e}})`);
      }
    }
  });

  test('outputs: bucket, topic, both roles and the replica are exported, each described', () => {
    const required = [
      'bucket_name',
      'sns_topic_arn',
      'backup_role_arn',
      'cost_analyzer_role_arn',
      'replica_bucket_name',
      'replica_bucket_arn',
    ];
    for (const name of required) assert.ok(root.output[name], `output ${name} is missing`);
    for (const [name, o] of Object.entries(root.output)) {
      assert.ok(typeof o.description === 'string' && o.description.length > 5, `output ${name} needs a description`);
      assert.ok(o.value !== undefined, `output ${name} needs a value`);
    }
    assert.equal(root.output.bucket_name!.value, ref('aws_s3_bucket.this.bucket'));
    assert.equal(root.output.sns_topic_arn!.value, ref('aws_sns_topic.this.arn'));
    assert.equal(root.output.backup_role_arn!.value, ref('aws_iam_role.backup.arn'));
    assert.equal(root.output.cost_analyzer_role_arn!.value, ref('aws_iam_role.cost_analyzer.arn'));
    assert.match(root.output.replica_bucket_name!.value, /aws_s3_bucket\.replica/);
  });

  test('every "terraform output NAME" in the docs names an output the module has', () => {
    const docs = [
      'README.md',
      ...list('docs')
        .filter((f) => f.endsWith('.md'))
        .map((f) => `docs/${f}`),
    ];
    let seen = 0;
    for (const doc of docs) {
      for (const m of read(doc).matchAll(/terraform output (?:-raw |-json )?([a-z0-9_]+)/g)) {
        seen++;
        assert.ok(root.output[m[1]!], `${doc}: "terraform output ${m[1]}" names no output of ${TF_DIR}`);
      }
    }
    assert.ok(seen >= 5, `expected the deploy guide to read several outputs, found ${seen}`);
  });
});

describe('terraform module: bucket', () => {
  test('versioning on, public access blocked, ACLs disabled, for the bucket and the replica', () => {
    for (const name of ['this', 'replica']) {
      const bucketRef = name === 'this' ? ref('aws_s3_bucket.this.id') : ref('aws_s3_bucket.replica[0].id');
      const v = root.resource.aws_s3_bucket_versioning?.[name];
      assert.ok(v, `aws_s3_bucket_versioning.${name} missing`);
      assert.equal(v.bucket, bucketRef);
      assert.equal(one(v.versioning_configuration, 'versioning_configuration').status, 'Enabled');
      const pab = root.resource.aws_s3_bucket_public_access_block?.[name];
      assert.ok(pab, `aws_s3_bucket_public_access_block.${name} missing`);
      assert.equal(pab.bucket, bucketRef);
      for (const k of ['block_public_acls', 'block_public_policy', 'ignore_public_acls', 'restrict_public_buckets']) {
        assert.equal(pab[k], true, `${name}: ${k} must be true`);
      }
      const own = root.resource.aws_s3_bucket_ownership_controls?.[name];
      assert.equal(one(own?.rule, 'ownership rule').object_ownership, 'BucketOwnerEnforced');
    }
  });

  test('default encryption: SSE-S3, or SSE-KMS with the given key', () => {
    const rule = one(root.resource.aws_s3_bucket_server_side_encryption_configuration?.this?.rule, 'sse rule');
    const def = one(rule.apply_server_side_encryption_by_default, 'apply_server_side_encryption_by_default');
    assert.match(def.sse_algorithm, /"aws:kms"/);
    assert.match(def.sse_algorithm, /"AES256"/);
    assert.match(def.sse_algorithm, /local\.kms_enabled|var\.kms_key_arn/);
    assert.equal(def.kms_master_key_id, ref('var.kms_key_arn'));
    assert.equal(root.locals.kms_enabled, ref('var.kms_key_arn != null'));
    assert.equal(root.variable.kms_key_arn?.default, null);
    const replica = one(root.resource.aws_s3_bucket_server_side_encryption_configuration?.replica?.rule, 'replica sse rule');
    assert.equal(one(replica.apply_server_side_encryption_by_default, 'replica default').kms_master_key_id, ref('var.replica_kms_key_arn'));
  });

  test('bucket policies deny every request not made over TLS', () => {
    for (const [name, bucket] of [
      ['this', 'aws_s3_bucket.this'],
      ['replica', 'aws_s3_bucket.replica[0]'],
    ] as const) {
      const policy = root.resource.aws_s3_bucket_policy?.[name];
      assert.ok(policy, `aws_s3_bucket_policy.${name} missing`);
      const deny = statementsOf(root, docNameOf(policy.policy, `aws_s3_bucket_policy.${name}.policy`)).find(
        (s) => s.effect === 'Deny' && hasCondition(s, 'Bool', 'aws:SecureTransport', ['false']),
      );
      assert.ok(deny, `${name}: no Deny statement on aws:SecureTransport = false`);
      assert.ok(deny.forEach === undefined, `${name}: the TLS deny must not be conditional`);
      assert.deepEqual(deny.actions, ['s3:*']);
      assert.deepEqual(new Set(deny.resources), new Set([ref(`${bucket}.arn`), `${ref(`${bucket}.arn`)}/*`]));
      assert.deepEqual(
        deny.principals.map((p) => [p.type, p.identifiers]),
        [['*', ['*']]],
      );
    }
  });

  test('object lock is optional, with mode and days from variables', () => {
    assert.equal(root.resource.aws_s3_bucket?.this?.object_lock_enabled, ref('var.object_lock_enabled'));
    assert.equal(root.variable.object_lock_enabled?.default, false);
    const lock = root.resource.aws_s3_bucket_object_lock_configuration?.this;
    assert.ok(lock, 'aws_s3_bucket_object_lock_configuration.this missing');
    assert.equal(lock.count, ref('var.object_lock_enabled ? 1 : 0'));
    const retention = one(one(lock.rule, 'lock rule').default_retention, 'default_retention');
    assert.equal(retention.mode, ref('var.object_lock_mode'));
    assert.equal(retention.days, ref('var.object_lock_days'));
    const modeCheck = JSON.stringify(root.variable.object_lock_mode?.validation);
    assert.ok(modeCheck.includes('GOVERNANCE') && modeCheck.includes('COMPLIANCE'), 'object_lock_mode must be validated');
  });
});

describe('terraform module: lifecycle', () => {
  const checkLifecycle = (name: string) => {
    const lc = root.resource.aws_s3_bucket_lifecycle_configuration?.[name];
    assert.ok(lc, `aws_s3_bucket_lifecycle_configuration.${name} missing`);
    const rules = blocksOf(lc, 'rule').map((r) => r.block);
    const prefixOf = (r: Obj): string | undefined => {
      const f = one(r.filter, `rule ${r.id} filter`);
      return f.prefix as string | undefined;
    };

    // Only archives/ changes storage class or expires current versions.
    const tiering = rules.filter((r) => many(r.transition).length > 0);
    assert.equal(tiering.length, 1, `${name}: exactly one rule may transition objects`);
    const t = tiering[0]!;
    assert.equal(t.status, 'Enabled');
    assert.equal(prefixOf(t), ref('local.archives_prefix'));
    assert.equal(root.locals.archives_prefix, `${ref('local.repo_prefix')}archives/`);
    const transitions = many(t.transition);
    assert.deepEqual(
      transitions.map((x) => [x.storage_class, x.days]),
      [
        ['STANDARD_IA', ref('var.ia_transition_days')],
        [ref('var.glacier_storage_class'), ref('var.glacier_transition_days')],
      ],
    );
    const exp = blocksOf(t, 'expiration');
    assert.equal(exp.length, 1, `${name}: the archives rule must expire objects`);
    assert.match(exp[0]!.forEach ?? '', /var\.archive_expiration_days/);
    assert.equal(exp[0]!.block.days, ref('expiration.value'));

    for (const r of rules) {
      const prefix = prefixOf(r);
      assert.ok(!String(prefix ?? '').includes('snapshots'), `${name}: rule ${r.id} targets snapshots/`);
      if (r === t) continue;
      assert.equal(
        many(r.transition).length + many(r.noncurrent_version_transition).length,
        0,
        `${name}: rule ${r.id} changes storage class`,
      );
      if (prefix === undefined) {
        // Whole-bucket rules (snapshots/ and config.json included) must not expire current versions.
        assert.equal(blocksOf(r, 'expiration').length, 0, `${name}: whole-bucket rule ${r.id} expires current objects`);
      } else {
        assert.ok(prefix === ref('local.archives_prefix') || prefix === ref('rule.value'), `${name}: unexpected rule prefix ${prefix}`);
      }
    }

    const wholeBucket = rules.filter((r) => prefixOf(r) === undefined);
    assert.ok(
      wholeBucket.some(
        (r) =>
          one(r.abort_incomplete_multipart_upload, 'abort').days_after_initiation === ref('var.abort_incomplete_multipart_upload_days'),
      ),
      `${name}: incomplete multipart uploads must be aborted bucket-wide`,
    );
    assert.ok(
      wholeBucket.some(
        (r) => one(r.noncurrent_version_expiration, 'noncurrent').noncurrent_days === ref('var.noncurrent_version_expiration_days'),
      ),
      `${name}: noncurrent versions must expire bucket-wide`,
    );
    assert.ok(
      many(lc.depends_on).length > 0 || JSON.stringify(lc.depends_on).includes('aws_s3_bucket_versioning'),
      `${name}: must depend on versioning`,
    );
  };

  test('primary bucket: archives/ tiers to IA and Glacier then expires; snapshots stay in Standard', () => checkLifecycle('this'));
  test('replica bucket: same archives/ rule', () => checkLifecycle('replica'));

  test('lifecycle defaults: 30 / 90 / 365 days, abort uploads after 7, ordering enforced', () => {
    assert.equal(root.variable.ia_transition_days?.default, 30);
    assert.equal(root.variable.glacier_transition_days?.default, 90);
    assert.equal(root.variable.glacier_storage_class?.default, 'GLACIER');
    assert.equal(root.variable.archive_expiration_days?.default, 365);
    assert.equal(root.variable.abort_incomplete_multipart_upload_days?.default, 7);
    assert.ok(Number(root.variable.noncurrent_version_expiration_days?.default) >= 1);
    const pre = JSON.stringify(root.resource.aws_s3_bucket_lifecycle_configuration?.this?.lifecycle);
    assert.match(pre, /var\.glacier_transition_days >= var\.ia_transition_days \+ 30/);
    assert.match(pre, /var\.archive_expiration_days > var\.glacier_transition_days/);
  });
});

describe('terraform module: IAM', () => {
  test('no policy statement allows a wildcard action or resource', () => {
    const stmts = allStatements(root);
    assert.ok(stmts.length >= 15, `expected the module's policy statements, found ${stmts.length}`);
    // Actions with no resource-level permissions: Resource must be "*", guarded by a condition.
    const noResourceLevel = new Set(['cloudwatch:PutMetricData']);
    for (const s of stmts) {
      const where = `${s.doc}/${s.sid}`;
      assert.ok(s.sid, `${s.doc}: every statement needs a sid`);
      assert.ok(['Allow', 'Deny'].includes(s.effect), `${where}: effect ${s.effect}`);
      assert.ok(
        !('not_actions' in s.raw) && !('not_resources' in s.raw) && !('not_principals' in s.raw),
        `${where}: NotAction/NotResource/NotPrincipal are not allowed`,
      );
      assert.ok(s.actions.length > 0, `${where}: no actions`);
      for (const a of s.actions) {
        assert.notEqual(a, '*', `${where}: action "*"`);
        if (s.effect === 'Allow') assert.ok(!a.includes('*'), `${where}: wildcard action ${a}`);
      }
      for (const r of s.resources) {
        if (r !== '*') continue;
        assert.equal(s.effect, 'Allow', `${where}: resource "*"`);
        assert.ok(
          s.actions.every((a) => noResourceLevel.has(a)),
          `${where}: resource "*" for ${s.actions.join(', ')}`,
        );
        assert.ok(s.conditions.length > 0, `${where}: resource "*" without a condition`);
      }
      for (const p of s.principals) {
        if (asList(p.identifiers).includes('*')) assert.equal(s.effect, 'Deny', `${where}: only Deny statements may name principal "*"`);
      }
      // Identity policies (no principals) allow only on this module's own resources.
      if (s.effect === 'Allow' && s.principals.length === 0) {
        for (const r of s.resources) {
          if (r === '*') continue;
          assert.match(
            r,
            /^\$\{(aws_s3_bucket\.(this|replica\[0\])\.arn|aws_sns_topic\.this\.arn|var\.(kms_key_arn|replica_kms_key_arn))\}/,
            `${where}: resource ${r} is not one of the module's`,
          );
        }
      }
    }
  });

  test('every policy attached anywhere is one of those documents; no managed or inline JSON policies', () => {
    const attachments: [string, unknown][] = [
      ...Object.entries(root.resource.aws_iam_role ?? {}).map(([n, r]) => [`aws_iam_role.${n}`, r.assume_role_policy] as [string, unknown]),
      ...Object.entries(root.resource.aws_iam_role_policy ?? {}).map(
        ([n, r]) => [`aws_iam_role_policy.${n}`, r.policy] as [string, unknown],
      ),
      ...Object.entries(root.resource.aws_s3_bucket_policy ?? {}).map(
        ([n, r]) => [`aws_s3_bucket_policy.${n}`, r.policy] as [string, unknown],
      ),
      ...Object.entries(root.resource.aws_sns_topic_policy ?? {}).map(
        ([n, r]) => [`aws_sns_topic_policy.${n}`, r.policy] as [string, unknown],
      ),
    ];
    assert.ok(attachments.length >= 9, `expected roles, role policies, bucket and topic policies; got ${attachments.length}`);
    for (const [what, p] of attachments) docNameOf(p, what);
    for (const kind of [
      'aws_iam_policy',
      'aws_iam_role_policy_attachment',
      'aws_iam_policy_attachment',
      'aws_iam_user',
      'aws_iam_access_key',
    ]) {
      assert.equal(root.resource[kind], undefined, `${kind} is not expected in this module`);
    }
    for (const [n, r] of Object.entries(root.resource.aws_iam_role ?? {})) {
      assert.equal(r.managed_policy_arns, undefined, `aws_iam_role.${n}: managed policies`);
      assert.equal(r.inline_policy, undefined, `aws_iam_role.${n}: inline_policy blocks`);
    }
  });

  test('backup role: repository read/write; deletes of run objects (probe, locks, history) and, optionally, rotation; SNS and metrics scoped', () => {
    const role = root.resource.aws_iam_role?.backup;
    assert.ok(role, 'aws_iam_role.backup missing');
    assert.equal(root.resource.aws_iam_role_policy?.backup?.role, ref('aws_iam_role.backup.id'));
    const stmts = statementsOf(root, docNameOf(root.resource.aws_iam_role_policy?.backup?.policy, 'backup policy'));
    const allowed = new Set([
      's3:ListBucket',
      's3:ListBucketMultipartUploads',
      's3:GetObject',
      's3:PutObject',
      's3:AbortMultipartUpload',
      's3:RestoreObject',
      's3:DeleteObject',
      'kms:Decrypt',
      'kms:GenerateDataKey',
      'sns:Publish',
      'cloudwatch:PutMetricData',
    ]);
    const actions = new Set(stmts.flatMap((s) => s.actions));
    for (const a of actions) assert.ok(allowed.has(a), `backup role: unexpected action ${a}`);
    for (const a of [
      's3:ListBucket',
      's3:GetObject',
      's3:PutObject',
      's3:DeleteObject',
      'sns:Publish',
      'cloudwatch:PutMetricData',
      'kms:GenerateDataKey',
    ]) {
      assert.ok(actions.has(a), `backup role: ${a} missing`);
    }
    const bucketArn = ref('aws_s3_bucket.this.arn');
    for (const s of stmts) {
      const bucketLevel = new Set(['s3:ListBucket', 's3:ListBucketMultipartUploads']);
      if (s.actions.some((a) => a.startsWith('s3:') && !bucketLevel.has(a))) {
        assert.ok(
          s.actions.every((a) => !bucketLevel.has(a)),
          `${s.sid}: mixes bucket and object actions`,
        );
        for (const r of s.resources) {
          assert.match(
            r,
            /^\$\{aws_s3_bucket\.this\.arn\}\/\$\{local\.(repo|snapshots|entries|archives|locks|history)_prefix\}/,
            `${s.sid}: object resource ${r} not under the repository prefix`,
          );
        }
      }
      if (s.actions.includes('s3:DeleteObject')) {
        // What each backup deletes (its probe, its lock, compacted history) always; rotation
        // (manifests and archives) only with allow_rotation_deletes. Never config.json or keys/,
        // never object versions. test/infra-iam-enforced.test.ts proves each of these is needed.
        assert.deepEqual(s.actions, ['s3:DeleteObject'], `${s.sid}: delete must be a statement of its own`);
        const runObjects = new Set([
          `${bucketArn}/${ref('local.repo_prefix')}.probe-*`,
          `${bucketArn}/${ref('local.locks_prefix')}*`,
          `${bucketArn}/${ref('local.history_prefix')}runs/*`,
          `${bucketArn}/${ref('local.history_prefix')}segments/*`,
        ]);
        const rotation = new Set([
          `${bucketArn}/${ref('local.snapshots_prefix')}*`,
          `${bucketArn}/${ref('local.entries_prefix')}*`,
          `${bucketArn}/${ref('local.archives_prefix')}*`,
        ]);
        if (s.forEach === undefined) {
          assert.deepEqual(new Set(s.resources), runObjects, `${s.sid}: unconditional deletes are the run objects only`);
        } else {
          assert.deepEqual(new Set(s.resources), rotation, `${s.sid}: deletes outside snapshots/, entries/ and archives/`);
          assert.match(s.forEach, /var\.allow_rotation_deletes/);
        }
      }
      if (s.actions.some((a) => bucketLevel.has(a))) assert.deepEqual(s.resources, [bucketArn]);
      if (s.actions.some((a) => a.startsWith('kms:'))) {
        assert.deepEqual(s.resources, [ref('var.kms_key_arn')]);
        assert.match(s.forEach ?? '', /kms_enabled|kms_key_arn/, 'KMS permissions only when a key is used');
      }
      if (s.actions.includes('sns:Publish')) assert.deepEqual(s.resources, [ref('aws_sns_topic.this.arn')]);
      if (s.actions.includes('cloudwatch:PutMetricData')) {
        assert.ok(
          hasCondition(s, 'StringEquals', 'cloudwatch:namespace', [ref('var.metrics_namespace')]),
          'PutMetricData must be limited to the namespace',
        );
      }
    }
    assert.equal(root.locals.snapshots_prefix, `${ref('local.repo_prefix')}snapshots/`);
    assert.equal(root.locals.locks_prefix, `${ref('local.repo_prefix')}locks/`);
    assert.equal(root.locals.history_prefix, `${ref('local.repo_prefix')}history/`);
    const deletes = stmts.filter((s) => s.actions.includes('s3:DeleteObject'));
    assert.equal(deletes.filter((s) => s.forEach === undefined).length, 1, 'one statement for the run objects');
    assert.equal(deletes.filter((s) => s.forEach !== undefined).length, 1, 'one statement for rotation');
    assert.ok(!stmts.some((s) => s.actions.includes('s3:DeleteObjectVersion')), 'never s3:DeleteObjectVersion');
  });

  test('cost-analyzer role: read-only; list, lifecycle, the repository metadata and the inventory, never archives/ or a write', () => {
    assert.ok(root.resource.aws_iam_role?.cost_analyzer, 'aws_iam_role.cost_analyzer missing');
    assert.equal(root.resource.aws_iam_role_policy?.cost_analyzer?.role, ref('aws_iam_role.cost_analyzer.id'));
    const stmts = statementsOf(root, docNameOf(root.resource.aws_iam_role_policy?.cost_analyzer?.policy, 'cost policy'));
    const actions = new Set(stmts.flatMap((s) => s.actions));
    assert.deepEqual(actions, new Set(['s3:ListBucket', 's3:GetLifecycleConfiguration', 's3:GetObject', 'kms:Decrypt']));
    const bucketArn = ref('aws_s3_bucket.this.arn');
    const readable = stmts.filter((s) => s.actions.includes('s3:GetObject')).flatMap((s) => s.resources);
    assert.deepEqual(
      new Set(readable),
      new Set([
        `${bucketArn}/${ref('local.repo_prefix')}config.json`,
        `${bucketArn}/${ref('local.repo_prefix')}keys/*`,
        `${bucketArn}/${ref('local.snapshots_prefix')}*`,
        `${bucketArn}/${ref('local.entries_prefix')}*`,
        `${bucketArn}/${ref('local.history_prefix')}*`,
        `${bucketArn}/${ref('local.inventory_prefix')}*`,
      ]),
      'the cost analyzer reads metadata (manifests, history, keys) and the inventory: never archives/, locks/ or the whole prefix',
    );
    for (const s of stmts) {
      if (s.actions.includes('s3:ListBucket') || s.actions.includes('s3:GetLifecycleConfiguration'))
        assert.deepEqual(s.resources, [bucketArn]);
    }
    assert.match(root.locals.inventory_prefix, /var\.inventory_prefix/);
  });

  test('roles trust GitHub OIDC only for one repository on main, with audience sts.amazonaws.com', () => {
    const oidc = root.resource.aws_iam_openid_connect_provider?.github;
    assert.ok(oidc, 'aws_iam_openid_connect_provider.github missing');
    assert.equal(oidc.url, 'https://token.actions.githubusercontent.com');
    assert.deepEqual(oidc.client_id_list, ['sts.amazonaws.com']);
    assert.equal(root.locals.github_subject, `repo:${ref('var.github_repository')}:ref:refs/heads/${ref('var.github_branch')}`);
    assert.equal(root.variable.github_branch?.default, 'main');
    assert.equal(root.variable.github_repository?.default, undefined, 'github_repository must be required');

    for (const role of ['backup', 'cost_analyzer']) {
      const stmts = statementsOf(root, docNameOf(root.resource.aws_iam_role?.[role]?.assume_role_policy, `${role} trust`));
      const web = stmts.filter((s) => s.actions.includes('sts:AssumeRoleWithWebIdentity'));
      assert.equal(web.length, 1, `${role}: one GitHub OIDC trust statement`);
      const s = web[0]!;
      assert.equal(s.effect, 'Allow');
      assert.deepEqual(s.actions, ['sts:AssumeRoleWithWebIdentity']);
      assert.deepEqual(
        s.principals.map((p) => [p.type, p.identifiers]),
        [['Federated', [ref('local.github_oidc_provider_arn')]]],
      );
      assert.ok(
        hasCondition(s, 'StringEquals', 'token.actions.githubusercontent.com:aud', ['sts.amazonaws.com']),
        `${role}: audience condition`,
      );
      assert.ok(
        hasCondition(s, 'StringEquals', 'token.actions.githubusercontent.com:sub', [ref('local.github_subject')]),
        `${role}: subject condition`,
      );
      assert.ok(!s.conditions.some((c) => c.test === 'StringLike'), `${role}: no wildcard subject match`);
      for (const other of stmts.filter((x) => x !== s)) {
        assert.ok(!other.principals.some((p) => p.type === 'Federated'), `${role}/${other.sid}: other federated trust`);
        assert.ok(other.forEach !== undefined, `${role}/${other.sid}: extra trust must be opt-in`);
      }
    }
    assert.match(root.locals.github_oidc_provider_arn, /aws_iam_openid_connect_provider\.github\[0\]\.arn/);
  });
});

describe('terraform module: SNS and replication', () => {
  test('SNS topic with e-mail subscriptions and a topic policy', () => {
    assert.ok(root.resource.aws_sns_topic?.this, 'aws_sns_topic.this missing');
    const sub = root.resource.aws_sns_topic_subscription?.email;
    assert.ok(sub, 'aws_sns_topic_subscription.email missing');
    assert.equal(sub.protocol, 'email');
    assert.equal(sub.topic_arn, ref('aws_sns_topic.this.arn'));
    assert.match(sub.for_each, /var\.notification_emails/);
    const tp = root.resource.aws_sns_topic_policy?.this;
    assert.equal(tp?.arn, ref('aws_sns_topic.this.arn'));
    const stmts = statementsOf(root, docNameOf(tp?.policy, 'topic policy'));
    const publish = stmts.find((s) => s.effect === 'Allow' && s.actions.includes('sns:Publish'));
    assert.deepEqual(
      publish?.principals.map((p) => p.identifiers),
      [[ref('aws_iam_role.backup.arn')]],
    );
    assert.ok(
      stmts.some((s) => s.effect === 'Deny' && hasCondition(s, 'Bool', 'aws:SecureTransport', ['false'])),
      'topic policy: TLS deny',
    );
  });

  test('replication: optional, to a replica bucket through the aws.replica provider, with its own role', () => {
    assert.equal(root.variable.replication_enabled?.default, false);
    for (const [kind, byName] of Object.entries(root.resource)) {
      if (!kind.startsWith('aws_s3_bucket') || !byName.replica) continue;
      assert.equal(byName.replica.provider, ref('aws.replica'), `${kind}.replica must use the aws.replica provider`);
      assert.match(String(byName.replica.count), /replica_count|replication_enabled/, `${kind}.replica must be optional`);
    }
    assert.match(root.locals.replica_count, /var\.replication_enabled/);
    const rep = root.resource.aws_s3_bucket_replication_configuration?.this;
    assert.ok(rep, 'aws_s3_bucket_replication_configuration.this missing');
    assert.equal(rep.role, ref('aws_iam_role.replication[0].arn'));
    assert.equal(rep.bucket, ref('aws_s3_bucket.this.id'));
    const rule = one(rep.rule, 'replication rule');
    assert.equal(rule.status, 'Enabled');
    assert.equal(one(rule.destination, 'destination').bucket, ref('aws_s3_bucket.replica[0].arn'));
    assert.match(
      JSON.stringify(rep.depends_on),
      /aws_s3_bucket_versioning\.this.*aws_s3_bucket_versioning\.replica|aws_s3_bucket_versioning\.replica.*aws_s3_bucket_versioning\.this/,
    );
    const trust = statementsOf(root, docNameOf(root.resource.aws_iam_role?.replication?.assume_role_policy, 'replication trust'));
    assert.deepEqual(
      trust.flatMap((s) => s.principals.map((p) => [p.type, p.identifiers])),
      [['Service', ['s3.amazonaws.com']]],
    );
    const perms = statementsOf(root, docNameOf(root.resource.aws_iam_role_policy?.replication?.policy, 'replication policy'));
    const write = perms.find((s) => s.actions.includes('s3:ReplicateObject'));
    assert.deepEqual(write?.resources, [`${ref('aws_s3_bucket.replica[0].arn')}/*`]);
  });
});

describe('terraform: formatting (terraform fmt conventions, checked by hand)', () => {
  /** Bracket depth at the start of each line, ignoring strings (with nested ${…}) and comments. */
  function lineDepths(text: string): { depth: number; endDepth: number }[] {
    const out: { depth: number; endDepth: number }[] = [];
    let depth = 0;
    let i = 0;
    const n = text.length;
    const skipString = (): void => {
      // at opening quote
      i++;
      while (i < n && text[i] !== '"') {
        if (text[i] === '\\') i += 2;
        else if (text[i] === '$' && text[i + 1] === '{') {
          i += 2;
          let d = 1;
          while (i < n && d > 0) {
            if (text[i] === '"') skipString();
            else {
              if (text[i] === '{') d++;
              if (text[i] === '}') d--;
              i++;
            }
          }
        } else i++;
      }
      i++;
    };
    let lineStart = depth;
    while (i < n) {
      const c = text[i]!;
      if (c === '\n') {
        out.push({ depth: lineStart, endDepth: depth });
        i++;
        lineStart = depth;
      } else if (c === '"') skipString();
      else if (c === '#') {
        while (i < n && text[i] !== '\n') i++;
      } else {
        if ('{[('.includes(c)) depth++;
        if ('}])'.includes(c)) depth--;
        i++;
      }
    }
    return out;
  }

  test('2-space indentation by nesting, aligned "=", no tabs or trailing spaces, one final newline', () => {
    const modules = [root, example];
    let checkedLines = 0;
    for (const mod of modules) {
      for (const [f, text] of mod.texts) {
        const where = `${mod.dir}/${f}`;
        assert.ok(text.endsWith('\n') && !text.endsWith('\n\n'), `${where}: must end with exactly one newline`);
        assert.ok(!text.includes('\t'), `${where}: tabs`);
        assert.ok(!text.includes('\r'), `${where}: CR line endings`);
        const lines = text.split('\n');
        const depths = lineDepths(text);
        let chain: { line: number; eq: number; key: number }[] = [];
        const closeChain = () => {
          if (chain.length > 1) {
            const want = Math.max(...chain.map((c) => c.key)) + 1;
            for (const c of chain)
              assert.equal(c.eq, want, `${where}:${c.line + 1}: "=" not aligned (terraform fmt aligns consecutive attributes)`);
          } else if (chain.length === 1) {
            assert.equal(chain[0]!.eq, chain[0]!.key + 1, `${where}:${chain[0]!.line + 1}: one space before "="`);
          }
          chain = [];
        };
        for (let li = 0; li < depths.length; li++) {
          const line = lines[li]!;
          checkedLines++;
          assert.ok(!/[ \t]$/.test(line), `${where}:${li + 1}: trailing whitespace`);
          if (line.trim() === '') {
            closeChain();
            continue;
          }
          const { depth, endDepth } = depths[li]!;
          const closes = /^\s*[}\])]/.test(line) ? 1 : 0;
          const indent = line.length - line.trimStart().length;
          assert.equal(indent, 2 * (depth - closes), `${where}:${li + 1}: indentation ${indent}, expected ${2 * (depth - closes)}`);
          const attr = /^(\s*)("[^"]*"|[A-Za-z_][\w.-]*)(\s*)=(?!=)/.exec(line);
          const prevIndent = chain.length ? lines[chain[0]!.line]!.length - lines[chain[0]!.line]!.trimStart().length : indent;
          if (attr && endDepth === depth && indent === prevIndent) {
            chain.push({ line: li, eq: attr[2]!.length + attr[3]!.length, key: attr[2]!.length });
          } else {
            closeChain();
            if (attr && endDepth === depth) chain.push({ line: li, eq: attr[2]!.length + attr[3]!.length, key: attr[2]!.length });
            else if (attr) assert.equal(attr[3], ' ', `${where}:${li + 1}: one space before "="`);
          }
        }
        closeChain();
      }
    }
    assert.ok(checkedLines > 500);
  });
});

describe('terraform: examples/minimal', () => {
  test('calls the module with every required variable, only declared ones, and both providers', () => {
    const mod = example.module.s3backup;
    assert.ok(mod, 'module "s3backup" missing');
    assert.equal(mod.source, '../..');
    assert.ok(exists(`${EXAMPLES_DIR}/minimal/../../versions.tf`));
    const meta = new Set(['source', 'providers', 'version', 'count', 'for_each', 'depends_on']);
    for (const arg of Object.keys(mod)) {
      if (!meta.has(arg)) assert.ok(root.variable[arg], `example passes undeclared variable ${arg}`);
    }
    for (const [name, v] of Object.entries(root.variable)) {
      if (!('default' in v)) assert.ok(name in mod, `example must set required variable ${name}`);
    }
    const providers = mod.providers as Obj;
    assert.equal(providers['aws.replica'] ?? providers.aws_replica, ref('aws.replica'));
    assert.ok(
      example.provider.aws?.some((p) => p.alias === 'replica'),
      'example must configure provider aws.replica',
    );
    for (const [name, o] of Object.entries(example.output)) {
      const mm = /^\$\{module\.s3backup\.([a-z0-9_]+)\}$/.exec(String(o.value));
      assert.ok(mm && root.output[mm[1]!], `example output ${name} refers to a missing module output`);
    }
  });
});
