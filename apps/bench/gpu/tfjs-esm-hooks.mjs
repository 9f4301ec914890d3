// Node module hooks that load TF.js's per-file ES modules (tfjs-core/dist/**.js: `import ... from '../ops/mat_mul'`,
// no extensions, no "type": "module") so tfjs_peer.mjs can import register_all_gradients.js: the published
// Node bundle (tf-core.node.js) has no gradients, which @tensorflow/tfjs adds from those files.
const TFJS = /\/@tensorflow\/tfjs-core\/dist\//;
export async function resolve(specifier, context, next) {
  if (
    context.parentURL &&
    TFJS.test(context.parentURL) &&
    specifier.startsWith(".") &&
    !specifier.endsWith(".js")
  ) {
    return next(`${specifier}.js`, context);
  }
  return next(specifier, context);
}
export async function load(url, context, next) {
  if (TFJS.test(url) && url.endsWith(".js") && !url.endsWith(".node.js"))
    return next(url, { ...context, format: "module" });
  return next(url, context);
}
