// shellcheck on the repository's shell scripts and on the shell examples in docs/deploy.md.
// shellcheck is a Debian package (apt-get install -y shellcheck); without it these tests fail.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cliInvocations, CLI_COMMANDS, exists, list, read, requireShellcheck, shellcheckFiles, shellcheckText } from './infra-helpers.ts';

describe('shell scripts', () => {
  test('shellcheck is installed', () => {
    requireShellcheck();
  });

  test('shellcheck finds real problems (self-test)', () => {
    const out = shellcheckText('#!/bin/bash\nrm -rf $1/tmp\n');
    assert.match(out, /SC2086/);
  });

  test('scripts/*.sh and .ci/run pass shellcheck (warnings and errors)', () => {
    const files = list('scripts')
      .filter((f) => f.endsWith('.sh'))
      .map((f) => `scripts/${f}`);
    if (exists('.ci/run')) files.push('.ci/run');
    assert.ok(files.length > 0, 'no shell scripts found in scripts/ or .ci/');
    assert.equal(shellcheckFiles(files, { severity: 'warning' }), '');
  });

  test('shell examples in docs/deploy.md pass shellcheck and use real s3backup commands', () => {
    const doc = read('docs/deploy.md');
    const blocks = [...doc.matchAll(/^```(bash|sh)\n([\s\S]*?)^```$/gm)].map((m) => ({ shell: m[1] as 'bash' | 'sh', code: m[2]! }));
    assert.ok(blocks.length >= 5, `expected shell examples in docs/deploy.md, found ${blocks.length}`);
    const report: string[] = [];
    for (const [i, b] of blocks.entries()) {
      // Typed at a prompt, not run as a script: a failed `cd` is seen at once (SC2164).
      const out = shellcheckText(b.code, { shell: b.shell, exclude: ['SC2164'] });
      if (out) report.push(`block ${i + 1}:\n${b.code}\n${out}`);
      for (const c of cliInvocations(b.code))
        assert.ok(CLI_COMMANDS.has(c), `docs/deploy.md block ${i + 1}: unknown s3backup command ${c}`);
    }
    assert.equal(report.join('\n\n'), '');
  });
});
