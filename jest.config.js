/** Jest projects: unit (no network), integration (real Redis/NATS/ClickHouse/S3), e2e (HTTP through the gateway). */
// Transpile only: `npm run typecheck` is where types are checked.
const transform = { "^.+\\.ts$": ["ts-jest", { diagnostics: false }] };
const common = { testEnvironment: "node", transform, moduleFileExtensions: ["ts", "js", "json"] };

module.exports = {
	// Real servers and HTTP: generous per-test time so a busy 2-core machine does not fail them.
	testTimeout: 30_000,
	projects: [
		{ ...common, displayName: "unit", testMatch: ["<rootDir>/test/unit/**/*.test.ts"] },
		{ ...common, displayName: "integration", testMatch: ["<rootDir>/test/integration/**/*.test.ts"] },
		{ ...common, displayName: "e2e", testMatch: ["<rootDir>/test/e2e/**/*.test.ts"] }
	]
};
