import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
	{ ignores: ["dist/", "node_modules/", "data/", "coverage/"] },
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
		files: ["*.js"],
		languageOptions: { sourceType: "commonjs", globals: { module: "writable", require: "readonly" } }
	},
	{
		files: ["test/**/*.ts", "bench/**/*.ts", "scripts/**/*.ts"],
		rules: { "no-console": "off" }
	}
);
