// What the build bound this component to. `npm run build:components` generates the module that
// component sources import as `wsbridge/guest`: it imports the WIT interfaces the component's
// world has, fills this in, and re-exports the kit (index.js). A kit function whose interface the
// world lacks throws an Error that names the missing import.

export const bound = {
  /** wasmcloud:messaging/consumer@0.2.0, or a string saying why there is none. */
  consumer: 'the world does not import wasmcloud:messaging/consumer@0.2.0: add `import wasmcloud:messaging/consumer@0.2.0;` to world.wit',
  /** The WebSocket transport (golem.js, wasmcloud.js), or a string saying why there is none. */
  websocket: 'the world imports no WebSocket client: add `import golem:websocket/client@1.5.0;` (or wasmcloud:websocket/client@0.1.1-draft) to world.wit',
  /** False in QuickJS builds: promises never settle there (no event loop runs). */
  eventLoop: true,
};

export const NO_EVENT_LOOP = 'this component was built with QuickJS, which runs no event loop, so a promise never settles: write a synchronous handler, or build with StarlingMonkey (the default engine)';

export function bind(what) {
  Object.assign(bound, what);
}
