// Loaded with `node --import` in front of `jco componentize`: preview2-shim 0.26 starts with no
// filesystem preopens, so the bundled wasm-tools cannot read the WIT or the source
// ("os error 44"). The build process (never the gateway) gets the whole filesystem.
import { _setPreopens } from '@bytecodealliance/preview2-shim/filesystem';

_setPreopens({ '/': '/' });
