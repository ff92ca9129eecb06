import { type Command, Option } from 'commander';
import type { z } from 'zod';
import { declaredSettings, type FileValues, type FlagOptions } from '../config/settings.ts';

// Commander options from the settings a feature declares (config/settings.ts): the flag, its
// --help text, its choices and its parser all come from the declaration.

/**
 * The commander option of each setting of `feature` that has a flag, by setting key. `help`
 * replaces the declared --help text on this command (the same flag worded for another command).
 */
export function settingOptions<F extends z.ZodObject>(
  feature: F,
  help: Partial<Record<keyof F['shape'] & string, string>> = {},
): Record<keyof F['shape'] & string, Option> {
  const out: Record<string, Option> = {};
  for (const s of declaredSettings(feature)) {
    if (!s.meta.flag) continue;
    const option = new Option(s.meta.flag, (help as Record<string, string | undefined>)[s.key] ?? s.meta.help);
    if (s.choices) option.choices(s.choices);
    const parse = s.meta.parse;
    const flag = option.long ?? s.meta.flag;
    const one = parse ? (v: string) => parse(v, flag) : (v: string) => v;
    if (s.meta.repeatable) option.argParser((v: string, previous: unknown[] | undefined) => [...(previous ?? []), one(v)]);
    else if (parse) option.argParser(one);
    out[s.key] = option;
  }
  return out as Record<keyof F['shape'] & string, Option>;
}

/** Add the flags of every setting of `feature`, in declaration order. */
export function addSettingOptions(cmd: Command, feature: z.ZodObject): Command {
  for (const option of Object.values(settingOptions(feature))) cmd.addOption(option);
  return cmd;
}

/** The settings of `feature` given as flags on the command line, by setting key (commander names some differently: --repo is repository). */
export function flagValues<F extends z.ZodObject>(feature: F, opts: FlagOptions<F>): Partial<FileValues<F>> {
  const out: Record<string, unknown> = {};
  for (const s of declaredSettings(feature)) {
    if (!s.meta.flag) continue;
    const v = (opts as Record<string, unknown>)[new Option(s.meta.flag).attributeName()];
    if (v !== undefined) out[s.key] = v;
  }
  return out as Partial<FileValues<F>>;
}
