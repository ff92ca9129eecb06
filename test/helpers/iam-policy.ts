// The Terraform module's IAM policies as the JSON AWS would receive, and as a Ceph RGW bucket
// policy that lets a second Ceph user do exactly what a role may do in the repository's bucket
// (test/infra-iam-enforced.test.ts). Terraform cannot run here (no provider downloads), so the
// few expressions the policy documents use are evaluated by a small HCL evaluator below; it
// throws on anything it does not know rather than guess.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parse } from '@cdktf/hcl2json';
import { ROOT } from './tree.ts';

type Obj = Record<string, any>;
export type Value = string | number | boolean | null | Value[];

export interface TerraformModule {
  data: Record<string, Record<string, Obj>>;
  locals: Record<string, unknown>;
  variable: Record<string, Obj>;
}

/** Every .tf file of a folder (relative to the repository), merged. */
export async function loadTerraform(dir: string): Promise<TerraformModule> {
  const m: TerraformModule = { data: {}, locals: {}, variable: {} };
  for (const f of readdirSync(path.join(ROOT, dir))
    .filter((x) => x.endsWith('.tf'))
    .sort()) {
    const j = (await parse(f, readFileSync(path.join(ROOT, dir, f), 'utf8'))) as Obj;
    for (const [kind, byName] of Object.entries((j.data ?? {}) as Obj)) {
      for (const [name, blocks] of Object.entries(byName as Obj)) (m.data[kind] ??= {})[name] = (blocks as Obj[])[0]!;
    }
    for (const l of (j.locals ?? []) as Obj[]) Object.assign(m.locals, l);
    for (const [name, blocks] of Object.entries((j.variable ?? {}) as Obj)) m.variable[name] = (blocks as Obj[])[0]!;
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// A small HCL expression evaluator: templates ("${…}" with nested strings), references (var.,
// local., resource attributes given by the caller), ==, !=, &&, ||, !, ?:, lists, and trim().

type Node =
  | { t: 'lit'; v: Value }
  | { t: 'tpl'; parts: (string | Node)[] }
  | { t: 'ref'; path: string }
  | { t: 'call'; name: string; args: Node[] }
  | { t: 'list'; items: Node[] }
  | { t: 'cond'; c: Node; a: Node; b: Node }
  | { t: 'bin'; op: string; l: Node; r: Node }
  | { t: 'not'; x: Node };

class Parser {
  private i = 0;
  private readonly src: string;
  constructor(src: string) {
    this.src = src;
  }

  /** The whole source as a template (hcl2json's strings are unquoted templates). */
  whole(): Node {
    const n = this.template(false);
    if (this.i !== this.src.length) this.fail('trailing text');
    return n;
  }

  private fail(why: string): never {
    throw new Error(`HCL evaluator: ${why} at ${this.i} in ${JSON.stringify(this.src)}`);
  }

  private template(quoted: boolean): Node {
    const parts: (string | Node)[] = [];
    let text = '';
    while (this.i < this.src.length) {
      const c = this.src[this.i]!;
      if (quoted && c === '"') break;
      if (c === '$' && this.src[this.i + 1] === '{') {
        if (text) parts.push(text);
        text = '';
        this.i += 2;
        parts.push(this.expr());
        this.ws();
        if (this.src[this.i] !== '}') this.fail('expected }');
        this.i++;
        continue;
      }
      if (c === '%' && this.src[this.i + 1] === '{') this.fail('template directives (%{…}) are not supported');
      if (quoted && c === '\\') {
        const e = this.src[this.i + 1];
        const map: Record<string, string> = { n: '\n', t: '\t', '"': '"', '\\': '\\' };
        if (e === undefined || !(e in map)) this.fail(`escape \\${e}`);
        text += map[e]!;
        this.i += 2;
        continue;
      }
      text += c;
      this.i++;
    }
    if (text) parts.push(text);
    return { t: 'tpl', parts };
  }

  private ws(): void {
    while (/\s/.test(this.src[this.i] ?? '')) this.i++;
  }

  private peek(s: string): boolean {
    this.ws();
    return this.src.startsWith(s, this.i);
  }

  private eat(s: string): boolean {
    if (!this.peek(s)) return false;
    this.i += s.length;
    return true;
  }

  private expr(): Node {
    const c = this.or();
    if (this.eat('?')) {
      const a = this.expr();
      if (!this.eat(':')) this.fail('expected :');
      return { t: 'cond', c, a, b: this.expr() };
    }
    return c;
  }

  private or(): Node {
    let l = this.and();
    while (this.eat('||')) l = { t: 'bin', op: '||', l, r: this.and() };
    return l;
  }

  private and(): Node {
    let l = this.eq();
    while (this.eat('&&')) l = { t: 'bin', op: '&&', l, r: this.eq() };
    return l;
  }

  private eq(): Node {
    let l = this.unary();
    for (;;) {
      if (this.eat('==')) l = { t: 'bin', op: '==', l, r: this.unary() };
      else if (this.eat('!=')) l = { t: 'bin', op: '!=', l, r: this.unary() };
      else return l;
    }
  }

  private unary(): Node {
    if (this.peek('!') && !this.peek('!=')) {
      this.i++;
      return { t: 'not', x: this.unary() };
    }
    return this.primary();
  }

  private primary(): Node {
    this.ws();
    const c = this.src[this.i];
    if (c === '"') {
      this.i++;
      const n = this.template(true);
      if (this.src[this.i] !== '"') this.fail('unterminated string');
      this.i++;
      return n;
    }
    if (c === '(') {
      this.i++;
      const n = this.expr();
      if (!this.eat(')')) this.fail('expected )');
      return n;
    }
    if (c === '[') {
      this.i++;
      const items: Node[] = [];
      while (!this.eat(']')) {
        items.push(this.expr());
        if (!this.eat(',') && !this.peek(']')) this.fail('expected , or ]');
      }
      return { t: 'list', items };
    }
    const num = /^-?\d+(\.\d+)?/.exec(this.src.slice(this.i));
    if (num) {
      this.i += num[0].length;
      return { t: 'lit', v: Number(num[0]) };
    }
    const id = /^[A-Za-z_][A-Za-z0-9_-]*/.exec(this.src.slice(this.i));
    if (!id) this.fail('expected an expression');
    this.i += id[0].length;
    if (id[0] === 'true' || id[0] === 'false') return { t: 'lit', v: id[0] === 'true' };
    if (id[0] === 'null') return { t: 'lit', v: null };
    if (this.eat('(')) {
      const args: Node[] = [];
      while (!this.eat(')')) {
        args.push(this.expr());
        if (!this.eat(',') && !this.peek(')')) this.fail('expected , or )');
      }
      return { t: 'call', name: id[0], args };
    }
    let p = id[0];
    for (;;) {
      const m = /^(\.[A-Za-z_][A-Za-z0-9_-]*|\[\d+\])/.exec(this.src.slice(this.i));
      if (!m) break;
      p += m[0];
      this.i += m[0].length;
    }
    return { t: 'ref', path: p };
  }
}

export interface EvalContext {
  /** Values of the module's variables (defaults are filled in from variable blocks). */
  vars: Record<string, Value>;
  /** Attributes of resources and data sources the policies name, e.g. "aws_s3_bucket.this.arn". */
  known: Record<string, Value>;
  locals: Record<string, unknown>;
}

/** A context for a module: variable defaults overridden by `vars`. */
export function contextFor(m: TerraformModule, vars: Record<string, Value>, known: Record<string, Value>): EvalContext {
  const all: Record<string, Value> = {};
  for (const [name, v] of Object.entries(m.variable)) if ('default' in v) all[name] = v.default as Value;
  Object.assign(all, vars);
  return { vars: all, known, locals: m.locals };
}

const cache = new WeakMap<EvalContext, Map<string, Value>>();

function evalNode(n: Node, ctx: EvalContext): Value {
  switch (n.t) {
    case 'lit':
      return n.v;
    case 'list':
      return n.items.map((x) => evalNode(x, ctx));
    case 'tpl': {
      // A template that is one interpolation and nothing else has that value's own type.
      if (n.parts.length === 1 && typeof n.parts[0] !== 'string') return evalNode(n.parts[0]!, ctx);
      return n.parts
        .map((p) => {
          if (typeof p === 'string') return p;
          const v = evalNode(p, ctx);
          if (v === null || Array.isArray(v)) throw new Error(`HCL evaluator: ${JSON.stringify(v)} in a string template`);
          return String(v);
        })
        .join('');
    }
    case 'ref': {
      const [root, name] = n.path.split('.');
      if (root === 'var') {
        if (!(name! in ctx.vars)) throw new Error(`HCL evaluator: var.${name} has no value (give it one)`);
        return ctx.vars[name!]!;
      }
      if (root === 'local') {
        if (n.path.split('.').length !== 2 || !(name! in ctx.locals)) throw new Error(`HCL evaluator: unknown ${n.path}`);
        const memo = cache.get(ctx) ?? new Map<string, Value>();
        cache.set(ctx, memo);
        if (!memo.has(name!)) memo.set(name!, evaluate(ctx.locals[name!], ctx));
        return memo.get(name!)!;
      }
      if (n.path in ctx.known) return ctx.known[n.path]!;
      throw new Error(`HCL evaluator: no value for ${n.path} (add it to the known attributes)`);
    }
    case 'call': {
      const args = n.args.map((a) => evalNode(a, ctx));
      if (n.name === 'trim') {
        const [s, chars] = args;
        if (typeof s !== 'string' || typeof chars !== 'string') throw new Error('HCL evaluator: trim(string, string)');
        let a = 0;
        let b = s.length;
        while (a < b && chars.includes(s[a]!)) a++;
        while (b > a && chars.includes(s[b - 1]!)) b--;
        return s.slice(a, b);
      }
      throw new Error(`HCL evaluator: function ${n.name}() is not supported`);
    }
    case 'cond': {
      const c = evalNode(n.c, ctx);
      if (typeof c !== 'boolean') throw new Error(`HCL evaluator: condition is ${JSON.stringify(c)}, not a bool`);
      return evalNode(c ? n.a : n.b, ctx);
    }
    case 'not': {
      const x = evalNode(n.x, ctx);
      if (typeof x !== 'boolean') throw new Error('HCL evaluator: ! needs a bool');
      return !x;
    }
    case 'bin': {
      const l = evalNode(n.l, ctx);
      const r = evalNode(n.r, ctx);
      if (n.op === '==') return JSON.stringify(l) === JSON.stringify(r);
      if (n.op === '!=') return JSON.stringify(l) !== JSON.stringify(r);
      if (typeof l !== 'boolean' || typeof r !== 'boolean') throw new Error(`HCL evaluator: ${n.op} needs bools`);
      return n.op === '&&' ? l && r : l || r;
    }
  }
}

/** Evaluate a value as hcl2json gives it: strings are templates; lists and literals as they are. */
export function evaluate(v: unknown, ctx: EvalContext): Value {
  if (typeof v === 'string') return evalNode(new Parser(v).whole(), ctx);
  if (Array.isArray(v)) return v.map((x) => evaluate(x, ctx));
  if (v === null || typeof v === 'number' || typeof v === 'boolean') return v;
  throw new Error(`HCL evaluator: cannot evaluate ${JSON.stringify(v)}`);
}

// ---------------------------------------------------------------------------------------------
// aws_iam_policy_document → IAM JSON

export interface IamStatement {
  Sid: string;
  Effect: 'Allow' | 'Deny';
  Action: string[];
  Resource?: string[];
  NotResource?: string[];
  Principal?: { AWS: string[] };
  Condition?: Record<string, Record<string, string[]>>;
}
export interface IamPolicy {
  Version: '2012-10-17';
  Statement: IamStatement[];
}

const many = (b: unknown): Obj[] => (Array.isArray(b) ? (b as Obj[]) : []);

/** Static blocks of a kind, and dynamic ones repeated as their for_each says. */
function expand(parent: Obj, kind: string, ctx: EvalContext): Obj[] {
  const out = [...many(parent[kind])];
  for (const d of many(parent.dynamic?.[kind])) {
    const each = evaluate(d.for_each, ctx);
    if (!Array.isArray(each)) throw new Error(`dynamic "${kind}": for_each is ${JSON.stringify(each)}, not a list`);
    for (let k = 0; k < each.length; k++) out.push(...many(d.content));
  }
  return out;
}

const strings = (v: Value, what: string): string[] => {
  const list = Array.isArray(v) ? v : [v];
  for (const x of list) if (typeof x !== 'string') throw new Error(`${what}: ${JSON.stringify(x)} is not a string`);
  return list as string[];
};

/** data.aws_iam_policy_document.NAME as the JSON policy Terraform would render. */
export function renderPolicy(m: TerraformModule, name: string, ctx: EvalContext): IamPolicy {
  const doc = m.data.aws_iam_policy_document?.[name];
  if (!doc) throw new Error(`data.aws_iam_policy_document.${name} is not declared`);
  const Statement: IamStatement[] = [];
  for (const s of expand(doc, 'statement', ctx)) {
    for (const unsupported of ['not_actions', 'not_resources', 'not_principals', 'principals']) {
      if (unsupported in s || s.dynamic?.[unsupported])
        throw new Error(`${name}/${s.sid}: ${unsupported} is not supported by this renderer`);
    }
    const st: IamStatement = {
      Sid: String(s.sid ?? ''),
      Effect: ((s.effect as string | undefined) ?? 'Allow') as 'Allow' | 'Deny',
      Action: strings(evaluate(s.actions ?? [], ctx), `${name}/${s.sid} actions`),
      Resource: strings(evaluate(s.resources ?? [], ctx), `${name}/${s.sid} resources`),
    };
    for (const c of expand(s, 'condition', ctx)) {
      const test = String(c.test);
      const variable = strings(evaluate(c.variable, ctx), 'condition variable')[0]!;
      ((st.Condition ??= {})[test] ??= {})[variable] = strings(evaluate(c.values, ctx), 'condition values');
    }
    Statement.push(st);
  }
  return { Version: '2012-10-17', Statement };
}

// ---------------------------------------------------------------------------------------------
// IAM role policy → Ceph RGW bucket policy for a user

/**
 * Object-level S3 actions. Ceph falls back to ACLs when a bucket policy neither allows nor
 * denies a request, and the object's owner (the user who wrote it) may always read it that
 * way; so each of these gets an explicit Deny outside the resources the role allows it on.
 * Bucket-level actions need no such Deny: the user owns no bucket and has no ACL grant.
 */
export const OBJECT_ACTIONS = [
  's3:GetObject',
  's3:PutObject',
  's3:DeleteObject',
  's3:AbortMultipartUpload',
  's3:ListMultipartUploadParts',
  's3:RestoreObject',
  's3:GetObjectVersion',
  's3:DeleteObjectVersion',
  's3:PutObjectRetention',
];

export interface CephRole {
  /** The Ceph user (principal arn:aws:iam:::user/NAME). */
  user: string;
  policy: IamPolicy;
}

export interface CephTranslation {
  policy: IamPolicy;
  /** Actions left out (not S3: Ceph's bucket policies refuse them), per user. */
  notS3: Record<string, string[]>;
}

/**
 * One bucket policy granting each user what its IAM policy grants in `bucket`:
 *   - its S3 statements, with the user as principal (conditions kept: Ceph evaluates s3:prefix);
 *   - s3:DeleteObject also on the bucket ARN: Ceph 16 checks a DeleteObjects request once
 *     against the bucket before checking every key against its object ARN (AWS checks the keys
 *     only), so without it no multi-object delete would pass at all;
 *   - per object-level action, a Deny outside the resources allowed (see OBJECT_ACTIONS).
 * Non-S3 actions (kms:, sns:, cloudwatch:) are left out and reported.
 */
export function cephBucketPolicy(roles: CephRole[], bucket: string): CephTranslation {
  const bucketArn = `arn:aws:s3:::${bucket}`;
  const Statement: IamStatement[] = [];
  const notS3: Record<string, string[]> = {};
  for (const { user, policy } of roles) {
    const Principal = { AWS: [`arn:aws:iam:::user/${user}`] };
    const tag = user.replace(/[^A-Za-z0-9]/g, '');
    const allowedOn = new Map<string, Set<string>>();
    for (const s of policy.Statement) {
      if (s.Effect !== 'Allow' || s.NotResource) throw new Error(`${s.Sid}: only Allow statements with Resource can be translated`);
      const actions = s.Action.filter((a) => a.startsWith('s3:'));
      for (const a of s.Action.filter((x) => !x.startsWith('s3:'))) (notS3[user] ??= []).push(a);
      if (actions.length === 0) continue;
      for (const r of s.Resource ?? []) {
        if (r !== bucketArn && !r.startsWith(`${bucketArn}/`)) throw new Error(`${s.Sid}: resource ${r} is not in bucket ${bucket}`);
      }
      const objectActions = actions.filter((a) => OBJECT_ACTIONS.includes(a));
      if (objectActions.length && s.Condition)
        throw new Error(`${s.Sid}: a condition on object actions cannot be emulated (the Deny below would ignore it)`);
      for (const a of objectActions) {
        const set = allowedOn.get(a) ?? new Set<string>();
        for (const r of s.Resource ?? []) set.add(r);
        allowedOn.set(a, set);
      }
      Statement.push({ ...s, Sid: `${tag}${s.Sid}`, Principal, Action: actions });
    }
    if (allowedOn.has('s3:DeleteObject')) {
      Statement.push({ Sid: `${tag}CephMultiDelete`, Effect: 'Allow', Principal, Action: ['s3:DeleteObject'], Resource: [bucketArn] });
      allowedOn.get('s3:DeleteObject')!.add(bucketArn);
    }
    for (const a of OBJECT_ACTIONS) {
      const on = allowedOn.get(a);
      const Sid = `${tag}Only${a.slice(3)}`;
      Statement.push(
        on
          ? { Sid, Effect: 'Deny', Principal, Action: [a], NotResource: [...on] }
          : { Sid, Effect: 'Deny', Principal, Action: [a], Resource: [`${bucketArn}/*`] },
      );
    }
  }
  return { policy: { Version: '2012-10-17', Statement }, notS3 };
}

// ---------------------------------------------------------------------------------------------
// Role users on the test server

export interface RoleUser {
  name: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/**
 * Create (or reuse) a Ceph user through scripts/ceph-rgw.sh, as CI would. Only possible on the
 * Ceph RGW that script runs on this machine: with S3_TEST_ENDPOINT pointing at another server
 * this throws, naming the reason (the enforced-policy test must not pass by skipping).
 */
export function roleUser(name: string, endpoint: string): RoleUser {
  const u = new URL(endpoint);
  const port = u.port || '80';
  if (!['127.0.0.1', 'localhost'].includes(u.hostname)) {
    throw new Error(
      `the IAM enforcement test needs a second S3 user, which it creates with radosgw-admin on the Ceph RGW test server that ` +
        `scripts/ceph-rgw.sh runs on this machine; S3_TEST_ENDPOINT=${endpoint} is not on loopback. Run "npm test" without S3_TEST_ENDPOINT, or point it at that server`,
    );
  }
  const r = spawnSync('bash', [path.join(ROOT, 'scripts/ceph-rgw.sh'), 'user', name, port], { encoding: 'utf8', timeout: 120_000 });
  const env = Object.fromEntries(
    (r.stdout ?? '')
      .split('\n')
      .filter((l) => /^[A-Z0-9_]+=/.test(l))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  if (r.status !== 0 || !env.AWS_ACCESS_KEY_ID || !env.AWS_SECRET_ACCESS_KEY) {
    throw new Error(
      `cannot create the S3 user ${name} for the IAM enforcement test ("scripts/ceph-rgw.sh user ${name} ${port}" exited ${r.status ?? r.signal}): ` +
        `${(r.stderr || r.error?.message || '').trim()}\nThis test runs only against the Ceph RGW test server scripts/ceph-rgw.sh started (npm test does that); ` +
        `S3_TEST_ENDPOINT=${endpoint} must be that server.`,
    );
  }
  return { name, accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY };
}
