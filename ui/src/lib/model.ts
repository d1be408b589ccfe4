// Fields some engines add to the generated types (rerun from step, restarts). They are
// optional here so that the console works with and without them.

import type { RunDetail, StepView, AttemptView } from "./api/generated";

export interface Interruption {
  step_id: string;
  hash: string;
  started_at: number | null;
  boot_id: number | null;
  stopped_at: number | null;
  resumed_boot_id: number;
  resumed_at: number;
}

export type Step = StepView & { reused_from?: string | null };

export type Run = Omit<RunDetail, "steps"> & {
  steps: Step[];
  rerun_from_step?: string | null;
  rerun_step_input?: unknown;
  interruptions?: Interruption[];
};

export type { AttemptView };
