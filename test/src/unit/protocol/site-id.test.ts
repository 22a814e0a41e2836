import { describe, expect, it } from 'vitest';
import { SiteIdSchema } from '@sitesync/protocol';

describe('site id', () => {
  it('is a positive 32-bit integer (efector id)', () => {
    for (const ok of [1, 42, 2_147_483_647]) expect(SiteIdSchema.safeParse(ok).success).toBe(true);
    for (const bad of [0, -1, 1.5, 2_147_483_648, '7', null, NaN])
      expect(SiteIdSchema.safeParse(bad).success).toBe(false);
  });
});
