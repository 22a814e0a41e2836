// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';

/** Another package is imported by its entry point, never by a path into its source or build. */
const DEEP = {
  group: ['@sitesync/*/src/*', '@sitesync/*/dist/*', '**/libs/*/*', '**/agents/*/*', '**/tools/*/*'],
  message: 'Use the package entry point.',
};
const NO_TOOLS = {
  group: ['@sitesync/syncctl', '**/tools/**'],
  message: 'An agent does not import the operator tooling.',
};
const NO_SITE_AGENT = {
  group: ['@sitesync/peripheral'],
  message: 'The central agent does not depend on the site agent.',
};
const NO_AGENTS = {
  group: ['@sitesync/central', '@sitesync/peripheral', '@sitesync/syncctl'],
  message: 'A library does not import an agent or the tooling.',
};

/** `no-restricted-imports` with the deep-import rule and `more`. */
function restrictedImports(...more) {
  return ['error', { patterns: [DEEP, ...more] }];
}

export default tseslint.config(
  {
    ignores: [
      '**/dist/**',
      '**/node_modules/**',
      '**/bin/**',
      'bench/results/**',
      'bench/*.mjs',
      '.demo/**',
      'coverage/**',
      '.ci/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts', '**/*.mts'],
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['*.mts'] }, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { 'import-x': importX },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'import-x/no-cycle': 'error',
      'no-restricted-imports': restrictedImports(),
    },
  },
  {
    // The agents never import the operator tooling, and the central agent never the site agent.
    files: ['agents/**/*.ts'],
    rules: { 'no-restricted-imports': restrictedImports(NO_TOOLS) },
  },
  {
    files: ['agents/central/**/*.ts'],
    rules: { 'no-restricted-imports': restrictedImports(NO_TOOLS, NO_SITE_AGENT) },
  },
  {
    // The libraries import no agent and no tool.
    files: ['libs/**/*.ts'],
    rules: { 'no-restricted-imports': restrictedImports(NO_AGENTS) },
  },
  {
    files: ['**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
);
