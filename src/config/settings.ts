import { z } from 'zod';

// The declaration form of settings. Each feature (the store and its location, the archive
// output, cost, …) declares its settings once, as one zod object whose fields are the values as
// the config file takes them; each field is registered here with the rest of what the setting
// is: its command-line flag, --help text and environment variable. A default is a zod
// .default() on the field. From that one declaration come:
//   - the config file keys: fileSection() (every key optional, defaults left out, so that a
//     default never hides the environment);
//   - the commander options: cli/settings.ts;
//   - the typed options: resolveSettings() merges flag > environment > config file > default.
// Features: config/store-settings.ts, config/archive-settings.ts, config/cost-settings.ts.

/** What a setting declares besides its config file value (the zod schema it is registered on). */
export interface SettingMeta {
  /** Commander flags, e.g. "--level <n>" or "-r, --repo <url>"; none: the setting has no flag. */
  flag?: string;
  /** The flag's --help text. */
  help?: string;
  /** Environment variable giving the setting, between the flag and the config file. */
  env?: string;
  /**
   * The flag's text to the value; `flag` is the long flag, for errors ("--level must be …").
   * Without it the flag's text is the value (an enum's values are the flag's choices).
   */
  parse?: (text: string, flag: string) => unknown;
  /** The flag may be given more than once: its values (each parsed) are collected in a list. */
  repeatable?: boolean;
}

const registry = z.registry<SettingMeta>();

declare const declared: unique symbol;
/**
 * A schema registered as a setting. The phantom property carries the declaration's type (its
 * flag as a literal, its parser) to FlagOptions, which types the options commander gives back.
 */
export type Declared<T extends z.ZodType, M extends SettingMeta> = T & { readonly [declared]?: M };

/** Register `meta` on `schema` (the field as the config file takes it) and return the schema. */
export function setting<T extends z.ZodType, const M extends SettingMeta>(schema: T, meta: M): Declared<T, M> {
  registry.add(schema, meta);
  return schema;
}

/** A field without its .optional() and .default() wrappers. */
function inner(field: z.ZodType): z.ZodType {
  let f = field;
  while (f instanceof z.ZodOptional || f instanceof z.ZodDefault) f = f.unwrap() as z.ZodType;
  return f;
}

/** One declared setting of a feature. */
export interface DeclaredSetting {
  key: string;
  meta: SettingMeta;
  /** The values an enum setting takes. */
  choices?: readonly string[];
  /** The declared default, if any. */
  default?: unknown;
}

/** The settings a feature declares, in declaration order (the order of its flags in --help). */
export function declaredSettings(feature: z.ZodObject): DeclaredSetting[] {
  return Object.entries(feature.shape as Record<string, z.ZodType>).map(([key, field]) => {
    const base = inner(field);
    const meta = registry.get(base) ?? {};
    const d: DeclaredSetting = { key, meta };
    if (base instanceof z.ZodEnum) d.choices = base.options as string[];
    for (let f = field; f instanceof z.ZodOptional || f instanceof z.ZodDefault; f = f.unwrap() as z.ZodType) {
      if (f instanceof z.ZodDefault) d.default = f.def.defaultValue;
    }
    return d;
  });
}

export type Bare<T> = T extends z.ZodDefault<infer I> ? Bare<I> : T extends z.ZodOptional<infer I> ? Bare<I> : T;
export type FileShape<S extends z.ZodRawShape> = { [K in keyof S]: z.ZodOptional<Bare<S[K]> & z.ZodType> };

/**
 * A feature's keys as the config file takes them: every one optional, without defaults (those
 * apply after the environment, in resolveSettings), unknown keys refused.
 */
export function fileSection<S extends z.ZodRawShape>(feature: z.ZodObject<S>): z.ZodObject<FileShape<S>, z.core.$strict> {
  const shape = Object.fromEntries(
    Object.entries(feature.shape as unknown as Record<string, z.ZodType>).map(([k, f]) => [k, inner(f).optional()]),
  );
  return z.object(shape).strict() as unknown as z.ZodObject<FileShape<S>, z.core.$strict>;
}

/** "--sse-kms-key-id <id>" → "sse-kms-key-id"; "-r, --repo <url>" → "repo". */
type LongFlag<F> = F extends `${string}--${infer Rest}` ? (Rest extends `${infer Name} ${string}` ? Name : Rest) : never;
type Camel<S extends string> = S extends `${infer A}-${infer B}` ? `${A}${Capitalize<Camel<B>>}` : S;
/** The key commander stores a flag's value under (Option.attributeName()): "--sse-kms-key-id" → "sseKmsKeyId". */
export type AttributeName<F> = Camel<LongFlag<F> & string>;

type MetaOf<T> = Bare<T> extends { readonly [declared]?: infer M } ? M : never;
/** A flag's value as commander gives it: what the parser returns, else the flag's text (an enum's value). */
type FlagValue<T, M> = M extends { repeatable: true } ? FlagItem<T, M>[] : FlagItem<T, M>;
type FlagItem<T, M> = M extends { parse: (...args: never[]) => infer R }
  ? R
  : z.output<Bare<T> & z.ZodType> extends infer O
    ? O extends string
      ? O
      : string
    : never;

/**
 * The options commander gives back for the flags of a feature, by the name commander stores
 * each under (--repo: repo): the typed form of `cmd.opts()`, derived from the declarations.
 */
export type FlagOptions<F extends z.ZodObject> = {
  [K in keyof F['shape'] as MetaOf<F['shape'][K]> extends { flag: infer Flag extends string } ? AttributeName<Flag> : never]?: FlagValue<
    F['shape'][K],
    MetaOf<F['shape'][K]>
  >;
};

/** The values of a feature's settings as the config file holds them. */
export type FileValues<F extends z.ZodObject> = z.output<ReturnType<typeof fileSection<F['shape']>>>;

export interface SettingLayers<F extends z.ZodObject> {
  /** Values given as flags, by setting key (undefined: not given). */
  flags?: Partial<FileValues<F>> | undefined;
  /** The environment: read for the settings that declare a variable (an empty one is unset). */
  env?: NodeJS.ProcessEnv | undefined;
  /** The feature's part of the config file. */
  file?: Partial<FileValues<F>> | undefined;
}

/** The values the environment gives, by setting key (as text, as the config file takes them). */
export function envValues(feature: z.ZodObject, env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of declaredSettings(feature)) {
    const v = s.meta.env ? env[s.meta.env] : undefined;
    if (v) out[s.key] = v;
  }
  return out;
}

/** A feature's typed options: for each setting the flag, else the environment, else the config file, else its default. */
export function resolveSettings<F extends z.ZodObject>(feature: F, layers: SettingLayers<F>): z.output<F> {
  const flags = (layers.flags ?? {}) as Record<string, unknown>;
  const env = layers.env ? envValues(feature, layers.env) : {};
  const file = (layers.file ?? {}) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const s of declaredSettings(feature)) {
    const v = flags[s.key] ?? env[s.key] ?? file[s.key] ?? s.default;
    if (v !== undefined) out[s.key] = v;
  }
  return out as z.output<F>;
}
