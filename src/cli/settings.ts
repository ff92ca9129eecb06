import { type Command, Option } from 'commander';
import type { z } from 'zod';
import { declaredSettings, type FileValues } from '../config/settings.ts';

// Commander options from the settings a feature declares (config/settings.ts): the flag, its
// --help text, its choices and its parser all come from the declaration.

/** The commander option of each setting of `feature` that has a flag, by setting key. */
export function settingOptions<F extends z.ZodObject>(feature: F): Record<keyof F['shape'] & string, Option> {
  const out: Record<string, Option> = {};
  for (const s of declaredSettings(feature)) {
    if (!s.meta.flag) continue;
    const option = new Option(s.meta.flag, s.meta.help);
    if (s.choices) option.choices(s.choices);
    const parse = s.meta.parse;
    if (parse) option.argParser((v: string) => parse(v, option.long ?? s.meta.flag!));
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
export function flagValues<F extends z.ZodObject>(feature: F, opts: Record<string, unknown>): Partial<FileValues<F>> {
  const out: Record<string, unknown> = {};
  for (const s of declaredSettings(feature)) {
    if (!s.meta.flag) continue;
    const v = opts[new Option(s.meta.flag).attributeName()];
    if (v !== undefined) out[s.key] = v;
  }
  return out as Partial<FileValues<F>>;
}
