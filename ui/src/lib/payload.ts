// Payloads for Test function and Send event: parsing with clear messages, the examples of
// the known events (`event_types`), and the last payload per function (localStorage).

export interface EventField {
  name: string;
  type: string;
  required?: boolean;
  secret?: boolean;
}
export interface EventType {
  name: string;
  description?: string;
  fields?: EventField[];
  example?: Record<string, unknown>;
}

export function asEventTypes(v: unknown): EventType[] {
  return Array.isArray(v) ? (v.filter((x) => x && typeof x === "object" && "name" in x) as EventType[]) : [];
}

/** Parses `text` as a JSON object; an error message in plain words when it is not one. */
export function parseObject(text: string): { ok: true; value: Record<string, unknown> } | { ok: false; error: string } {
  if (!text.trim()) return { ok: false, error: "The payload is empty: write a JSON object, e.g. {}" };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return { ok: false, error: `Not valid JSON: ${(e as Error).message}` };
  }
  if (!v || typeof v !== "object" || Array.isArray(v)) {
    return { ok: false, error: "The payload must be a JSON object ({...})" };
  }
  return { ok: true, value: v as Record<string, unknown> };
}

/** Checks `data` against an event type's fields: required ones present, strings strings. */
export function checkFields(data: Record<string, unknown>, type: EventType | undefined): string | null {
  for (const f of type?.fields ?? []) {
    const v = data[f.name];
    if (v === undefined || v === null) {
      if (f.required) return `\`${f.name}\` is required for ${type!.name}`;
      continue;
    }
    if (f.type.startsWith("string") && (typeof v !== "string" || (f.required && !v.trim()))) {
      return `\`${f.name}\` must be a non-empty string`;
    }
  }
  return null;
}

const KEY = (fnId: string) => `stepdesk.payload.${fnId}`;

export function lastPayload(fnId: string): string | null {
  try {
    return localStorage.getItem(KEY(fnId));
  } catch {
    return null;
  }
}

export function rememberPayload(fnId: string, text: string): void {
  try {
    localStorage.setItem(KEY(fnId), text);
  } catch {
    // storage full or disabled: nothing to remember
  }
}

export function pretty(v: unknown): string {
  return JSON.stringify(v, null, 2);
}
