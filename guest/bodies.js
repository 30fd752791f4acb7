// Message bodies: what a component may hand to publish, reply and request, and the text of any
// thrown value.
import { encodeUtf8 } from './utf8.js';

/**
 * The bytes of a body: a string as UTF-8 text, bytes as they are (Uint8Array, ArrayBuffer, any
 * typed array or DataView), `undefined` as an empty body, anything else as JSON.
 */
export function toBytes(body) {
  if (body === undefined) return new Uint8Array(0);
  if (typeof body === 'string') return encodeUtf8(body);
  if (body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  const json = JSON.stringify(body);
  if (json === undefined) throw new TypeError(`a ${typeof body} cannot be a message body (expected a string, bytes or a JSON value)`);
  return encodeUtf8(json);
}

/** Longest error text handed back to the host (it ends up in the gateway's log). */
const MAX_ERROR_CHARS = 4096;

/**
 * The text of anything thrown, for handle-message's `err(string)`. Never throws: an Error gives
 * "Name: message", a host import's error its payload, a string itself, anything else its JSON or
 * String() form; a value that defeats all of these (a throwing getter, a revoked proxy) still
 * gives a fixed text.
 */
export function describeThrown(value) {
  let text;
  try {
    text = describe(value, 0);
  } catch {
    text = undefined;
  }
  if (typeof text !== 'string' || text.length === 0) text = 'a value that cannot be shown as text was thrown';
  return text.length > MAX_ERROR_CHARS ? `${text.slice(0, MAX_ERROR_CHARS)}…` : text;
}

function describe(value, depth) {
  if (typeof value === 'string') return value;
  if (value === null || value === undefined) return `${value} was thrown`;
  if (typeof value !== 'object' && typeof value !== 'function') return String(value);
  if (depth < 3 && 'payload' in value) {
    // A host import's error (jco throws { payload }): the payload is the host's own text, or a
    // WIT variant { tag, val }.
    const p = value.payload;
    if (p !== null && typeof p === 'object' && typeof p.tag === 'string') return p.val === undefined || p.val === null ? p.tag : `${p.tag}: ${describe(p.val, depth + 1)}`;
    return describe(p, depth + 1);
  }
  if (value instanceof Error || (typeof value.message === 'string' && typeof value.name === 'string')) {
    const name = String(value.name || 'Error');
    const message = String(value.message ?? '');
    return message ? `${name}: ${message}` : name;
  }
  try {
    const json = JSON.stringify(value);
    if (json !== undefined && json !== '{}') return json;
  } catch {
    // cycles, BigInt: fall through to String()
  }
  return String(value);
}
