// The part of the WebAssembly JS API wsbridge uses. @types/node does not declare the namespace
// and the DOM lib would bring browser globals that do not exist on Node.
declare namespace WebAssembly {
  interface Module {}
  function compile(bytes: Uint8Array): Promise<Module>;
  class RuntimeError extends Error {}
}
