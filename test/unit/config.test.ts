/**
 * The config loader (shared/config.ts): embedded-mode defaults, validation of every variable
 * (a ConfigError naming the variable, never echoing credentials), the entry point's one-line
 * failure, and the documentation listing every variable.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { brokerOptions } from "../../moleculer.config";
import { ConfigError, loadConfig, SERVICE_NAMES, VARIABLES } from "../../shared/config";
import { MemoryKeyValueStore, sharedKeyValueStore } from "../../shared/kv";

const ROOT = path.resolve(__dirname, "../..");
const SECRET = "s3cretPassw0rd";
const GOOD_JWT = "x".repeat(32);

/** The ConfigError `loadConfig(env)` throws (fails the test when it throws nothing or something else). */
function configError(env: Record<string, string>): ConfigError {
	let thrown: unknown;
	try {
		loadConfig(env);
	} catch (err) {
		thrown = err;
	}
	if (!(thrown instanceof ConfigError)) throw new Error(`expected a ConfigError for ${JSON.stringify(env)}, got ${String(thrown)}`);
	return thrown;
}

function expectRejected(env: Record<string, string>, variable: string): ConfigError {
	const err = configError(env);
	expect(err.variable).toBe(variable);
	expect(err.name).toBe("ConfigError");
	expect(err.message.startsWith(`${variable} `)).toBe(true);
	expect(err.message.length).toBeGreaterThan(variable.length + 5);
	return err;
}

describe("loadConfig defaults: the embedded mode", () => {
	const config = loadConfig({});

	it("runs every service in one local process on port 3000", () => {
		expect(config.nodeEnv).toBe("development");
		expect(config.port).toBe(3000);
		expect(config.host).toBe("0.0.0.0");
		expect(config.opsPort).toBe(3001);
		expect(config.services).toEqual([...SERVICE_NAMES]);
		expect(config.transporter).toBeNull();
		expect(config.namespace).toBe("");
	});

	it("uses NeDB files, the memory store, embedded S3 and analytics, mail files, no payments", () => {
		expect(config.dataDir).toBe(path.resolve("./data"));
		expect(config.mongoUri).toBeNull();
		expect(config.redisUrl).toBeNull();
		expect(config.s3).toEqual({ endpoint: null, publicEndpoint: null, accessKey: "", secretKey: "", bucket: "marquee", region: "us-east-1" });
		expect(config.clickhouseUrl).toBeNull();
		expect(config.smtpUrl).toBeNull();
		expect(config.stripe).toEqual({ secretKey: null, webhookSecret: null });
		expect(config.jwtSecret).toBeNull();
		expect(config.jwtPreviousSecrets).toEqual([]);
	});

	it("links to the local CMS, mails from a local sender, hashes with bcrypt cost 12 (4 under test)", () => {
		expect(config.appUrl).toBe("http://localhost:3000");
		expect(config.mailFrom).toBe("Marquee <no-reply@marquee.local>");
		expect(config.bcryptCost).toBe(12);
		expect(loadConfig({ NODE_ENV: "test" }).bcryptCost).toBe(4);
	});

	it("has safe limits and quiet, readable logs (a banner and real warnings)", () => {
		expect(config.logLevel).toBe("warn");
		expect(config.logFormat).toBe("pretty");
		expect(config.tracing).toEqual({ exporter: "none", endpoint: null });
		expect(config.corsOrigins).toEqual([]);
		expect(config.maxBodyBytes).toBe(1024 * 1024);
		expect(config.rateLimit.perMinute).toBe(600);
		expect(config.trustProxyHops).toBe(0);
		expect(config.requestTimeoutMs).toBe(30_000);
		expect(config.shutdownTimeoutMs).toBe(10_000);
	});

	it("builds a broker without transporter, with the memory cacher, and a memory key/value store", () => {
		const options = brokerOptions(config, { logger: false });
		expect(options.transporter).toBeNull();
		expect(options.cacher).toMatchObject({ type: "Memory" });
		// (A temporary DATA_DIR: outside tests the memory store journals its throttles there.)
		expect(sharedKeyValueStore({ ...config, dataDir: fs.mkdtempSync(path.join(os.tmpdir(), "marquee-config-")) })).toBeInstanceOf(MemoryKeyValueStore);
	});

	it("NODE_ENV=test logs warnings only; production logs JSON from info up", () => {
		expect(loadConfig({ NODE_ENV: "test" }).logLevel).toBe("warn");
		const prod = loadConfig({ NODE_ENV: "production", JWT_SECRET: GOOD_JWT, ENCRYPTION_KEY: GOOD_JWT });
		expect(prod.logFormat).toBe("json");
		expect(prod.logLevel).toBe("info");
	});

	it("SERVICES names services, or leaves all of them (servicesNamed tells which)", () => {
		expect(loadConfig({}).servicesNamed).toBe(false);
		expect(loadConfig({ SERVICES: "all" }).servicesNamed).toBe(false);
		expect(loadConfig({ SERVICES: "api,billing" })).toMatchObject({ services: ["api", "billing"], servicesNamed: true });
	});

	it("blank values count as unset", () => {
		const blank = loadConfig({ PORT: "", MONGO_URI: " ", REDIS_URL: "", LOG_LEVEL: "", SERVICES: "" });
		expect(blank.port).toBe(3000);
		expect(blank.mongoUri).toBeNull();
		expect(blank.redisUrl).toBeNull();
		expect(blank.services).toEqual([...SERVICE_NAMES]);
	});
});

describe("loadConfig accepts valid production values", () => {
	it("reads every backend URL and number", () => {
		const config = loadConfig({
			NODE_ENV: "production",
			PORT: "8080",
			TRANSPORTER: "nats://nats:4222",
			MONGO_URI: "mongodb://marquee:pw@mongo:27017/marquee",
			REDIS_URL: "rediss://:pw@redis:6380/1",
			S3_ENDPOINT: "https://minio:9000",
			S3_ACCESS_KEY: "ak",
			S3_SECRET_KEY: "sk",
			CLICKHOUSE_URL: "http://default:@clickhouse:8123/marquee",
			SMTP_URL: "smtps://mailer:pw@smtp.example.com:465",
			JWT_SECRET: GOOD_JWT,
			ENCRYPTION_KEY: "k".repeat(40),
			JWT_PREVIOUS_SECRETS: `${"a".repeat(32)}, ${"b".repeat(40)}`,
			BCRYPT_COST: "13",
			APP_URL: "https://cms.example.com/",
			MAIL_FROM: "Signage <signage@example.com>",
			TRACING_EXPORTER: "zipkin",
			TRACING_ENDPOINT: "http://zipkin:9411",
			CORS_ORIGINS: "https://cms.example.com, http://localhost:5173/",
			RATE_LIMIT_PER_MINUTE: "120",
			LOG_LEVEL: "debug"
		});
		expect(config.port).toBe(8080);
		expect(config.transporter).toBe("nats://nats:4222");
		expect(config.mongoUri).toBe("mongodb://marquee:pw@mongo:27017/marquee");
		expect(config.redisUrl).toBe("rediss://:pw@redis:6380/1");
		expect(config.s3).toMatchObject({ endpoint: "https://minio:9000", accessKey: "ak", secretKey: "sk" });
		expect(config.tracing).toEqual({ exporter: "zipkin", endpoint: "http://zipkin:9411" });
		expect(config.corsOrigins).toEqual(["https://cms.example.com", "http://localhost:5173"]);
		expect(config.rateLimit.perMinute).toBe(120);
		expect(config.logLevel).toBe("debug");
		expect(config.jwtPreviousSecrets).toEqual(["a".repeat(32), "b".repeat(40)]);
		expect(config.bcryptCost).toBe(13);
		expect(config.appUrl).toBe("https://cms.example.com");
		expect(config.mailFrom).toBe("Signage <signage@example.com>");
		expect(brokerOptions(config, { logger: false }).transporter).toEqual({ type: "NATS", options: { url: "nats://nats:4222" } });
	});

	it("accepts mongodb+srv URIs", () => {
		expect(loadConfig({ MONGO_URI: "mongodb+srv://u:p@cluster0.example.net/marquee" }).mongoUri).toBe(
			"mongodb+srv://u:p@cluster0.example.net/marquee"
		);
	});

	it("accepts a replica-set MONGO_URI with a port on every host (the usual production form)", () => {
		const uri = "mongodb://marquee:pw@mongo-0:27017,mongo-1:27017,mongo-2:27017/marquee?replicaSet=rs0";
		expect(loadConfig({ MONGO_URI: uri }).mongoUri).toBe(uri);
	});

	it("SERVICES picks a subset, in the platform's order, ignoring blanks; * and all mean every service", () => {
		expect(loadConfig({ SERVICES: "media, api,,auth " }).services).toEqual(["api", "auth", "media"]);
		expect(loadConfig({ SERVICES: "analytics" }).services).toEqual(["analytics"]);
		expect(loadConfig({ SERVICES: "*" }).services).toEqual([...SERVICE_NAMES]);
		expect(loadConfig({ SERVICES: "all" }).services).toEqual([...SERVICE_NAMES]);
	});

	it("CORS_ORIGINS accepts *", () => {
		expect(loadConfig({ CORS_ORIGINS: "*" }).corsOrigins).toEqual(["*"]);
	});
});

describe("loadConfig rejects each bad variable with a ConfigError naming it", () => {
	const cases: Array<[string, Record<string, string>, string]> = [
		["PORT not a number", { PORT: "abc" }, "PORT"],
		["WEBHOOK_ALLOW_PRIVATE not a boolean", { WEBHOOK_ALLOW_PRIVATE: "yes please" }, "WEBHOOK_ALLOW_PRIVATE"],
		["WEBHOOK_ALLOW_PRIVATE in production", { NODE_ENV: "production", JWT_SECRET: "x".repeat(32), ENCRYPTION_KEY: "x".repeat(32), WEBHOOK_ALLOW_PRIVATE: "true" }, "WEBHOOK_ALLOW_PRIVATE"],
		["WEBHOOK_RETRY_SCHEDULE without units", { WEBHOOK_RETRY_SCHEDULE: "5,300" }, "WEBHOOK_RETRY_SCHEDULE"],
		["WEBHOOK_RETRY_SCHEDULE longer than a week", { WEBHOOK_RETRY_SCHEDULE: "5s,200h" }, "WEBHOOK_RETRY_SCHEDULE"],
		["WEBHOOK_TIMEOUT_MS too short", { WEBHOOK_TIMEOUT_MS: "5" }, "WEBHOOK_TIMEOUT_MS"],
		["WEBHOOK_DISABLE_AFTER_HOURS zero", { WEBHOOK_DISABLE_AFTER_HOURS: "0" }, "WEBHOOK_DISABLE_AFTER_HOURS"],
		["EMAIL_RETRY_SCHEDULE empty entry", { EMAIL_RETRY_SCHEDULE: "10s,,1m" }, "EMAIL_RETRY_SCHEDULE"],
		["NOTIFICATIONS_POLL_MS not a number", { NOTIFICATIONS_POLL_MS: "soon" }, "NOTIFICATIONS_POLL_MS"],
		["NOTIFICATIONS_LEASE_MS too short", { NOTIFICATIONS_LEASE_MS: "1" }, "NOTIFICATIONS_LEASE_MS"],
		["ALERT_DIGEST_THRESHOLD of one", { ALERT_DIGEST_THRESHOLD: "1" }, "ALERT_DIGEST_THRESHOLD"],
		["PAIRING_REQUESTS_PER_ADDRESS zero", { PAIRING_REQUESTS_PER_ADDRESS: "0" }, "PAIRING_REQUESTS_PER_ADDRESS"],
		["ANALYTICS_BATCH_ROWS zero", { ANALYTICS_BATCH_ROWS: "0" }, "ANALYTICS_BATCH_ROWS"],
		["ANALYTICS_BATCH_MS above a minute", { ANALYTICS_BATCH_MS: "60001" }, "ANALYTICS_BATCH_MS"],
		["ANALYTICS_RETENTION_MONTHS not a number", { ANALYTICS_RETENTION_MONTHS: "two years" }, "ANALYTICS_RETENTION_MONTHS"],
		["ANALYTICS_REPORTS_POLL_MS too short", { ANALYTICS_REPORTS_POLL_MS: "5" }, "ANALYTICS_REPORTS_POLL_MS"],
		["PORT out of range", { PORT: "70000" }, "PORT"],
		["PORT negative", { PORT: "-1" }, "PORT"],
		["PORT fractional", { PORT: "3000.5" }, "PORT"],
		["OPS_PORT out of range", { OPS_PORT: "65536" }, "OPS_PORT"],
		["NODE_ENV unknown", { NODE_ENV: "staging" }, "NODE_ENV"],
		["MONGO_URI not a URL", { MONGO_URI: "not-a-url" }, "MONGO_URI"],
		["MONGO_URI missing ://", { MONGO_URI: "mongodb//broken" }, "MONGO_URI"],
		["MONGO_URI wrong scheme", { MONGO_URI: "http://x" }, "MONGO_URI"],
		["REDIS_URL wrong scheme", { REDIS_URL: "http://redis:6379" }, "REDIS_URL"],
		["REDIS_URL not a URL", { REDIS_URL: "localhost" }, "REDIS_URL"],
		["TRANSPORTER wrong scheme", { TRANSPORTER: "redis://redis:6379" }, "TRANSPORTER"],
		["TRANSPORTER without host", { TRANSPORTER: "nats://" }, "TRANSPORTER"],
		["CLICKHOUSE_URL wrong scheme", { CLICKHOUSE_URL: "tcp://clickhouse:9000" }, "CLICKHOUSE_URL"],
		["SMTP_URL wrong scheme", { SMTP_URL: "http://smtp:25" }, "SMTP_URL"],
		["S3_ENDPOINT wrong scheme", { S3_ENDPOINT: "s3://bucket" }, "S3_ENDPOINT"],
		["S3_ENDPOINT without keys", { S3_ENDPOINT: "http://minio:9000" }, "S3_ACCESS_KEY"],
		["S3_ENDPOINT without secret key", { S3_ENDPOINT: "http://minio:9000", S3_ACCESS_KEY: "ak" }, "S3_SECRET_KEY"],
		["S3_BUCKET invalid", { S3_BUCKET: "Bad_Bucket" }, "S3_BUCKET"],
		["JWT_SECRET too short", { JWT_SECRET: "short" }, "JWT_SECRET"],
		["production without JWT_SECRET", { NODE_ENV: "production" }, "JWT_SECRET"],
		["ENCRYPTION_KEY too short", { ENCRYPTION_KEY: "short" }, "ENCRYPTION_KEY"],
		["ENCRYPTION_PREVIOUS_KEYS entry too short", { ENCRYPTION_PREVIOUS_KEYS: `${"k".repeat(40)},short` }, "ENCRYPTION_PREVIOUS_KEYS"],
		["SSO_ALLOW_PRIVATE not a boolean", { SSO_ALLOW_PRIVATE: "sometimes" }, "SSO_ALLOW_PRIVATE"],
		["PUBLIC_URL not http(s)", { PUBLIC_URL: "ftp://signage.example.com" }, "PUBLIC_URL"],
		["DNS_SERVERS not addresses", { DNS_SERVERS: "dns.example.com" }, "DNS_SERVERS"],
		["production without ENCRYPTION_KEY", { NODE_ENV: "production", JWT_SECRET: GOOD_JWT }, "ENCRYPTION_KEY"],
		["JWT_PREVIOUS_SECRETS with a short entry", { JWT_PREVIOUS_SECRETS: `${GOOD_JWT},short` }, "JWT_PREVIOUS_SECRETS"],
		["BCRYPT_COST out of range", { BCRYPT_COST: "20" }, "BCRYPT_COST"],
		["BCRYPT_COST below 12 in production", { NODE_ENV: "production", JWT_SECRET: GOOD_JWT, ENCRYPTION_KEY: GOOD_JWT, BCRYPT_COST: "10" }, "BCRYPT_COST"],
		["DEFAULT_PLAN_DISPLAYS not a number", { DEFAULT_PLAN_DISPLAYS: "many" }, "DEFAULT_PLAN_DISPLAYS"],
		["DEFAULT_PLAN_STORAGE_MB negative", { DEFAULT_PLAN_STORAGE_MB: "-1" }, "DEFAULT_PLAN_STORAGE_MB"],
		["DEFAULT_PLAN_MEMBERS zero", { DEFAULT_PLAN_MEMBERS: "0" }, "DEFAULT_PLAN_MEMBERS"],
		["S3_PUBLIC_ENDPOINT not http", { S3_PUBLIC_ENDPOINT: "ftp://cdn.example.com" }, "S3_PUBLIC_ENDPOINT"],
		["MAX_IMAGE_MB zero", { MAX_IMAGE_MB: "0" }, "MAX_IMAGE_MB"],
		["MAX_VIDEO_MB not a number", { MAX_VIDEO_MB: "big" }, "MAX_VIDEO_MB"],
		["APP_URL wrong scheme", { APP_URL: "ftp://cms.example.com" }, "APP_URL"],
		["SERVICES names an unknown service", { SERVICES: "api,billing,printer" }, "SERVICES"],
		["NAMESPACE with a space", { NAMESPACE: "a b" }, "NAMESPACE"],
		["CORS_ORIGINS entry without scheme", { CORS_ORIGINS: "https://ok.example.com,cms.example.com" }, "CORS_ORIGINS"],
		["CORS_ORIGINS entry with a path", { CORS_ORIGINS: "https://cms.example.com/app" }, "CORS_ORIGINS"],
		["CORS_ORIGINS entry not http(s)", { CORS_ORIGINS: "ftp://cms.example.com" }, "CORS_ORIGINS"],
		["TRACING_EXPORTER unknown", { TRACING_EXPORTER: "datadog" }, "TRACING_EXPORTER"],
		["TRACING_EXPORTER=zipkin without endpoint", { TRACING_EXPORTER: "zipkin" }, "TRACING_ENDPOINT"],
		["TRACING_EXPORTER=jaeger without endpoint", { TRACING_EXPORTER: "jaeger" }, "TRACING_ENDPOINT"],
		["TRACING_ENDPOINT wrong scheme", { TRACING_EXPORTER: "zipkin", TRACING_ENDPOINT: "udp://jaeger:6831" }, "TRACING_ENDPOINT"],
		["LOG_LEVEL unknown", { LOG_LEVEL: "verbose" }, "LOG_LEVEL"],
		["LOG_FORMAT unknown", { LOG_FORMAT: "xml" }, "LOG_FORMAT"],
		["MAX_BODY_BYTES too small", { MAX_BODY_BYTES: "10" }, "MAX_BODY_BYTES"],
		["RATE_LIMIT_PER_MINUTE zero", { RATE_LIMIT_PER_MINUTE: "0" }, "RATE_LIMIT_PER_MINUTE"],
		["TRUST_PROXY_HOPS too many", { TRUST_PROXY_HOPS: "11" }, "TRUST_PROXY_HOPS"],
		["REQUEST_TIMEOUT_MS not a number", { REQUEST_TIMEOUT_MS: "30s" }, "REQUEST_TIMEOUT_MS"],
		["SHUTDOWN_TIMEOUT_MS too large", { SHUTDOWN_TIMEOUT_MS: "9999999" }, "SHUTDOWN_TIMEOUT_MS"],
		["STRIPE_WEBHOOK_SECRET missing with STRIPE_SECRET_KEY", { STRIPE_SECRET_KEY: "sk_test_x", STRIPE_PRICE_PRO: "price_x" }, "STRIPE_WEBHOOK_SECRET"],
		["STRIPE_PRICE_PRO missing with STRIPE_SECRET_KEY", { STRIPE_SECRET_KEY: "sk_test_x", STRIPE_WEBHOOK_SECRET: "whsec_x" }, "STRIPE_PRICE_PRO"],
		["STRIPE_API_URL wrong scheme", { STRIPE_API_URL: "ftp://stripe.test" }, "STRIPE_API_URL"],
		["BILLING_PRO_PRICE_CENTS not whole", { BILLING_PRO_PRICE_CENTS: "24.5" }, "BILLING_PRO_PRICE_CENTS"],
		["BILLING_PRO_MAX_DISPLAYS zero", { BILLING_PRO_MAX_DISPLAYS: "0" }, "BILLING_PRO_MAX_DISPLAYS"],
		["BILLING_PRO_STORAGE_MB negative", { BILLING_PRO_STORAGE_MB: "-1" }, "BILLING_PRO_STORAGE_MB"],
		["BILLING_PRO_MEMBERS zero", { BILLING_PRO_MEMBERS: "0" }, "BILLING_PRO_MEMBERS"],
		["BILLING_GRACE_DAYS over a year", { BILLING_GRACE_DAYS: "400" }, "BILLING_GRACE_DAYS"]
	];

	it.each(cases)("%s", (_title, env, variable) => {
		expectRejected(env, variable);
	});

	it("every declared variable is validated somewhere above or has no invalid value", () => {
		const declared = VARIABLES.map(v => v.name);
		const freeForm = ["HOST", "DATA_DIR", "S3_REGION", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "MAIL_FROM"];
		const tested = new Set(cases.map(c => c[2]));
		expect(declared.filter(name => !tested.has(name) && !freeForm.includes(name))).toEqual([]);
	});

	it("messages say what is wrong", () => {
		expect(configError({ PORT: "abc" }).message).toMatch(/whole number/);
		expect(configError({ PORT: "70000" }).message).toMatch(/between 0 and 65535/);
		expect(configError({ MONGO_URI: "http://x" }).message).toMatch(/mongodb:\/\//);
		expect(configError({ SERVICES: "printer" }).message).toMatch(/printer/);
		expect(configError({ SERVICES: "printer" }).message).toMatch(/api, auth/);
		expect(configError({ NODE_ENV: "production" }).message).toMatch(/NODE_ENV=production/);
		expect(configError({ TRACING_EXPORTER: "zipkin" }).message).toMatch(/TRACING_EXPORTER=zipkin/);
		expect(configError({ LOG_LEVEL: "verbose" }).message).toMatch(/fatal, error, warn, info, debug, trace/);
		expect(configError({ S3_ENDPOINT: "http://minio:9000" }).message).toMatch(/S3_ENDPOINT/);
	});
});

describe("a bad URL's credentials never appear in the message", () => {
	const cases: Array<[string, string]> = [
		["REDIS_URL", `http://admin:${SECRET}@redis:6379`],
		["REDIS_URL", `redis://admin:${SECRET}@/0`],
		["REDIS_URL", `redis://admin:${SECRET}@redis:notaport`],
		["MONGO_URI", `mysql://admin:${SECRET}@db:3306/marquee`],
		["MONGO_URI", `mongodb//admin:${SECRET}@mongo`],
		["CLICKHOUSE_URL", `clickhouse://admin:${SECRET}@ch:9000`],
		["SMTP_URL", `http://mailer:${SECRET}@smtp:25`],
		["TRANSPORTER", `tls://nats:${SECRET}@nats:4222`],
		["S3_ENDPOINT", `ftp://key:${SECRET}@minio:9000`],
		["TRACING_ENDPOINT", `udp://u:${SECRET}@jaeger:6831`],
		["APP_URL", `ftp://admin:${SECRET}@cms`]
	];

	it.each(cases)("%s=%s", (variable, value) => {
		const env: Record<string, string> = { [variable]: value };
		if (variable === "TRACING_ENDPOINT") env.TRACING_EXPORTER = "jaeger";
		const err = expectRejected(env, variable);
		expect(err.message).not.toContain(SECRET);
		expect(err.message).not.toContain("admin");
	});

	it("nor the user name of a URL whose scheme was forgotten (user:password@host)", () => {
		const err = expectRejected({ REDIS_URL: `cacheuser:${SECRET}@cache.internal:6379` }, "REDIS_URL");
		expect(err.message).not.toContain(SECRET);
		expect(err.message).not.toContain("cacheuser");
	});
});

describe("server.ts refuses a bad configuration with one line", () => {
	let dataDir: string;
	beforeAll(() => {
		dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "marquee-config-"));
	});
	afterAll(() => fs.rmSync(dataDir, { recursive: true, force: true }));

	function runServer(env: Record<string, string>): Promise<{ code: number | null; signal: string | null; stderr: string; stdout: string }> {
		return new Promise((resolve, reject) => {
			const bin = path.join(ROOT, "node_modules/.bin");
			const child = spawn(path.join(bin, "tsx"), ["server.ts"], {
				cwd: ROOT,
				// Only what a shell would pass, plus the variable under test: no other config leaks in.
				env: { PATH: `${bin}${path.delimiter}${process.env.PATH ?? ""}`, HOME: process.env.HOME ?? os.tmpdir(), DATA_DIR: dataDir, ...env },
				stdio: ["ignore", "pipe", "pipe"]
			});
			let stdout = "";
			let stderr = "";
			child.stdout.on("data", d => (stdout += d));
			child.stderr.on("data", d => (stderr += d));
			const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
			child.once("error", reject);
			child.once("close", (code, signal) => {
				clearTimeout(timer);
				resolve({ code, signal, stderr, stdout });
			});
		});
	}

	it.each([
		["PORT", { PORT: "abc" }],
		["MONGO_URI", { MONGO_URI: "mongodb//broken" }]
	])("%s: exits non-zero, stderr is exactly one line naming it", async (variable, env) => {
		const result = await runServer(env);
		expect(result.signal).toBeNull(); // exited on its own, not killed by the timeout
		expect(result.code).not.toBe(0);
		const lines = result.stderr.split("\n").filter(line => line.trim() !== "");
		expect(lines).toEqual([expect.stringContaining(variable)]);
		expect(lines[0]).toMatch(new RegExp(`^marquee: invalid configuration: ${variable} `));
		expect(result.stdout.trim()).toBe("");
	}, 20_000);
});

describe("documentation lists every variable", () => {
	const read = (file: string): string => {
		try {
			return fs.readFileSync(path.join(ROOT, file), "utf8");
		} catch {
			return "";
		}
	};

	it(".env.example has a NAME= line (possibly commented) for each", () => {
		const text = read(".env.example");
		const missing = VARIABLES.map(v => v.name).filter(name => !new RegExp(`^\\s*#?\\s*${name}=`, "m").test(text));
		expect(missing).toEqual([]);
	});

	it("README.md names each", () => {
		const text = read("README.md");
		const missing = VARIABLES.map(v => v.name).filter(name => !new RegExp(`\\b${name}\\b`).test(text));
		expect(missing).toEqual([]);
	});
});
