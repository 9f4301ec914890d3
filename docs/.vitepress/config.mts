// VitePress config of the webattn site: guide pages (every docs/guide/*.md, found at build time),
// the typedoc API reference (markdown, generated into docs/api/ by scripts/docs-build.mjs) and the
// live demos (built by vite into docs/dist/demos/, linked with target=_self: they are plain pages).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitepress';

const docs = fileURLToPath(new URL('../', import.meta.url));

/** Preferred order of the guide; other pages in docs/guide/ follow alphabetically, before the last two. */
const ORDER = ['getting-started', 'devices', 'sdpa', 'flex', 'varlen', 'models', 'huggingface', 'benchmarks', 'troubleshooting'];

function guideSidebar() {
  const files = readdirSync(`${docs}guide`).filter((f) => f.endsWith('.md')).map((f) => f.slice(0, -3));
  const rank = (n: string) => (ORDER.includes(n) ? ORDER.indexOf(n) : ORDER.indexOf('benchmarks') - 0.5);
  files.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  return files.map((f) => {
    const src = readFileSync(`${docs}guide/${f}.md`, 'utf8');
    const fm = /^---\n[\s\S]*?\btitle:\s*(.+)\n[\s\S]*?---/.exec(src)?.[1];
    const h1 = /^#\s+(.+)$/m.exec(src)?.[1];
    return { text: (fm ?? h1 ?? f).replace(/^['"]|['"]$/g, ''), link: `/guide/${f}` };
  });
}

function apiSidebar() {
  const f = `${docs}api/typedoc-sidebar.json`;
  return existsSync(f) ? JSON.parse(readFileSync(f, 'utf8')) : [];
}

const demos = [
  { text: 'FlexAttention playground', link: '/demos/flex-playground.html', target: '_self' },
  { text: 'SDPA: flash vs math', link: '/demos/sdpa.html', target: '_self' },
  { text: 'GPT-2 / ViT: attn_implementation', link: '/demos/models.html', target: '_self' },
];

export default defineConfig({
  title: 'webattn',
  description: 'Composable attention for TypeScript on WebGPU: SDPA, FlashAttention, FlexAttention, varlen — in Node and the browser',
  outDir: 'dist',
  cleanUrls: false,
  lastUpdated: false,
  srcExclude: ['README.md', 'demos/**', 'dist/**', 'node_modules/**'],
  // demo pages are built next to the site (not VitePress pages); API pages link to sources outside docs/
  ignoreDeadLinks: [/^\/demos\//, /^\.\.\/\.\.\//, /\/packages\//],
  head: [['meta', { name: 'color-scheme', content: 'light dark' }], ['link', { rel: 'icon', href: 'data:,' }]],
  themeConfig: {
    nav: [
      { text: 'Guide', link: '/guide/getting-started' },
      { text: 'API', link: '/api/' },
      { text: 'Demos', items: demos },
      { text: 'Benchmarks', link: '/guide/benchmarks' },
    ],
    sidebar: {
      '/guide/': [
        { text: 'Guide', items: guideSidebar() },
        { text: 'Live demos', items: demos },
      ],
      '/api/': [{ text: 'API reference', items: apiSidebar() }],
      '/benchmarks': [{ text: 'Guide', items: guideSidebar() }],
    },
    outline: [2, 3],
    search: { provider: 'local' },
    footer: { message: 'webattn — MIT' },
  },
});
