// Server-Sent Events read through fetch: a browser's EventSource cannot send the Authorization
// header the API needs. Reconnects with Last-Event-ID after a dropped connection, so nothing
// is missed or seen twice; the server ends the stream after the job's final status.

import { ApiError, session } from "./api.js";

const RECONNECT_MS = 1000;

/** Splits one event block ("id: ...\r\nevent: ...\r\ndata: ...") into its fields. */
function parseBlock(block) {
  const event = { id: null, event: "message", data: [] };
  for (const line of block.split(/\r?\n|\r/)) {
    if (!line || line.startsWith(":")) continue; // a keep-alive comment
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "data") event.data.push(value);
    else if (field === "id" || field === "event") event[field] = value;
  }
  return event.data.length ? { ...event, data: JSON.parse(event.data.join("\n")) } : null;
}

/**
 * Calls onEvent({id, event, data}) for each event of `path`; when the server ends the stream,
 * awaits onEnd() and reconnects if it returns true (the job is not final: a proxy cut it).
 * onError(error) for an answer that reconnecting cannot mend (401, 403, 404).
 * Returns a function that stops it.
 */
export function subscribe(path, { onEvent, onEnd = async () => false, onError = () => {} }) {
  const controller = new AbortController();
  let lastId = null;

  async function readOnce() {
    const headers = { Authorization: `Bearer ${session.key ?? ""}`, Accept: "text/event-stream" };
    if (lastId !== null) headers["Last-Event-ID"] = lastId;
    const response = await fetch(path, { headers, signal: controller.signal });
    if (!response.ok) throw new ApiError(response.status, `${response.status} ${response.statusText}`);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const blocks = buffer.split(/\r\n\r\n|\n\n|\r\r/);
      buffer = blocks.pop(); // an incomplete block waits for the rest
      for (const block of blocks) {
        const event = parseBlock(block);
        if (event === null) continue;
        if (event.id !== null) lastId = event.id;
        onEvent(event);
      }
    }
  }

  (async () => {
    while (!controller.signal.aborted) {
      try {
        await readOnce();
        if (!(await onEnd())) return;
      } catch (error) {
        if (controller.signal.aborted) return;
        if (error instanceof ApiError && [401, 403, 404].includes(error.status)) {
          onError(error);
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
      }
    }
  })();
  return () => controller.abort();
}
