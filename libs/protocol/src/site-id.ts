import { z } from 'zod';

/**
 * A site's id: its efector id, a positive 32-bit integer. Every message body names the site it comes
 * from or goes to, and the site's config file names its own; both read it with this schema.
 */
export const SiteIdSchema = z.number().int().positive().max(2_147_483_647);
