// ESLint flat config: typescript-eslint's recommended rules plus @effect/eslint-plugin, whose `@effect/dprint`
// rule formats through dprint's TypeScript plugin (plugin.wasm, read from the @dprint/typescript npm package: nothing
// is downloaded at run time). Modelled on the Effect 3 monorepo's own eslint.config.mjs; `pnpm lint` checks,
// `pnpm lint-fix` fixes and formats.
import * as effectEslint from "@effect/eslint-plugin"
import js from "@eslint/js"
import { defineConfig, globalIgnores } from "eslint/config"
import tseslint from "typescript-eslint"

export default defineConfig(
  globalIgnores([
    "**/node_modules",
    "**/dist",
    "**/docs",
    "**/build",
    "**/coverage",
    "**/test-artifacts",
    "**/.tsbuildinfo",
    "packages/node/bench/.build",
    "**/*.md"
  ]),
  js.configs.recommended,
  tseslint.configs.recommended,
  effectEslint.configs.dprint,
  {
    languageOptions: {
      parser: tseslint.parser,
      ecmaVersion: "latest",
      sourceType: "module"
    },
    rules: {
      "no-fallthrough": "off",
      "no-irregular-whitespace": "off",
      "object-shorthand": "error",
      "prefer-destructuring": "off",
      "sort-imports": "off",
      "no-restricted-syntax": [
        "error",
        {
          selector: "CallExpression[callee.property.name='push'] > SpreadElement.arguments",
          message: "Do not use spread arguments in Array.push"
        }
      ],
      "no-unused-vars": "off",
      // Effect.gen bodies may not yield
      "require-yield": "off",
      "prefer-rest-params": "off",
      "prefer-spread": "off",

      "@typescript-eslint/array-type": ["error", { default: "generic", readonly: "generic" }],
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/no-unused-vars": [
        "error",
        {
          argsIgnorePattern: "^_",
          varsIgnorePattern: "^_",
          caughtErrorsIgnorePattern: "^_",
          destructuredArrayIgnorePattern: "^_"
        }
      ],
      "@typescript-eslint/no-non-null-assertion": "off",
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-empty-object-type": "off",
      "@typescript-eslint/no-unsafe-function-type": "off",
      "@typescript-eslint/no-wrapper-object-types": "off",
      "@typescript-eslint/ban-ts-comment": "off",
      "@typescript-eslint/explicit-function-return-type": "off",
      "@typescript-eslint/explicit-module-boundary-types": "off",
      "@typescript-eslint/no-array-constructor": "off",
      "@typescript-eslint/no-use-before-define": "off",
      "@typescript-eslint/no-namespace": "off",

      // The Effect monorepo's dprint settings
      "@effect/dprint": [
        "error",
        {
          config: {
            indentWidth: 2,
            lineWidth: 120,
            semiColons: "asi",
            quoteStyle: "alwaysDouble",
            trailingCommas: "never",
            operatorPosition: "maintain",
            "arrowFunction.useParentheses": "force"
          }
        }
      ]
    }
  },
  {
    // Library code and its tests log through Effect, never the console (bin/, examples/, bench/ and scripts may).
    files: ["packages/*/src/**/*", "packages/*/test/**/*"],
    rules: {
      "no-console": "error"
    }
  },
  {
    // Published sources import each module by path (`import * as Effect from "effect/Effect"`); the example app and
    // the tests may use the barrels.
    files: ["packages/core/src/**/*", "packages/node/src/**/*"],
    rules: {
      "@effect/no-import-from-barrel-package": [
        "error",
        { packageNames: ["effect", "@effect/platform", "@effect/sql"] }
      ]
    }
  }
)
