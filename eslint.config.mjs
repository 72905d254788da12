import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
	{ ignores: ["dist/", "node_modules/", "data/", "coverage/", "player/build/"] },
	js.configs.recommended,
	...tseslint.configs.recommended,
	{
		rules: {
			"@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
			"@typescript-eslint/no-explicit-any": "error",
			"no-console": ["error", { allow: ["warn", "error"] }]
		}
	},
	{
		// Services are typed by their contracts and ServiceSchema's generics: `this` comes from
		// ServiceSchema<Settings, Methods, Vars>, documents from their collection's type.
		files: ["services/**/*.ts"],
		rules: {
			"no-restricted-syntax": [
				"error",
				{
					selector: "TSAsExpression[expression.type='TSAsExpression'][expression.typeAnnotation.type='TSUnknownKeyword']",
					message: "No `as unknown as` in services: type the value at its source (contracts, collection types)."
				},
				{
					selector: ":function > Identifier.params[name='this']",
					message: "No `this:` annotations in services: ServiceSchema<Settings, Methods, Vars> types `this`."
				}
			]
		}
	},
	{
		// Scripts mongosh runs (k8s/components/dependencies/mongo-init.js): mongosh's globals.
		files: ["k8s/**/*.js"],
		languageOptions: {
			sourceType: "script",
			globals: { process: "readonly", print: "readonly", quit: "readonly", Mongo: "readonly", sleep: "readonly", db: "writable", rs: "readonly" }
		}
	},
	{
		files: ["*.js"],
		languageOptions: { sourceType: "commonjs", globals: { module: "writable", require: "readonly" } }
	},
	{
		// Test fixtures that plain node runs as child processes (ESM JavaScript, e.g. oidc-idp.mjs): node's globals.
		files: ["test/helpers/*.mjs"],
		languageOptions: {
			globals: { process: "readonly", console: "readonly", Buffer: "readonly", URL: "readonly", setTimeout: "readonly", clearTimeout: "readonly", setInterval: "readonly", clearInterval: "readonly" }
		},
		rules: { "no-console": "off" }
	},
	{
		files: ["test/**/*.ts", "bench/**/*.ts", "scripts/**/*.ts"],
		rules: { "no-console": "off" }
	}
);
