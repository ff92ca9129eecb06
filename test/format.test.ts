// Human-readable sizes, rates and durations of the CLI's output.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bytes, rate } from '../src/format.ts';

test('bytes: whole bytes below 1 KiB, two significant decimals above', () => {
  assert.equal(bytes(0), '0 B');
  assert.equal(bytes(6.787330316742081), '7 B');
  assert.equal(bytes(1023), '1023 B');
  assert.equal(bytes(1536), '1.50 KiB');
  assert.equal(bytes(50 * 1024 * 1024), '50.0 MiB');
  assert.equal(bytes(Number.NaN), '?');
});

test('rate: bytes per second, "-" without a duration', () => {
  assert.equal(rate(3, 442), '7 B/s');
  assert.equal(rate(150 * 1024 * 1024, 1000), '150 MiB/s');
  assert.equal(rate(10, 0), '-');
});
