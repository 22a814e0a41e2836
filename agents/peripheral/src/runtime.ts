/**
 * Node options the site agent runs with in its image (deploy/Dockerfile sets them as NODE_OPTIONS;
 * the memory benchmark starts the agent with them). Its live data peaks around 50 MiB whatever the
 * site's size (a few batches in flight), but without a cap V8 lets garbage pile up in the old
 * generation under the scan's allocation rate, so peak RSS grew with the size of the site (~1.5x
 * from 10k to 200k headers). Capped at 128 MiB, RSS stays flat at no measurable cost in speed
 * (docs/benchmarks.md).
 */
export const PERIPHERAL_NODE_OPTIONS = '--max-old-space-size=128';
