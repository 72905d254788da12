/**
 * The one config loader. Every environment variable the platform reads is declared in
 * VARIABLES below (name, default, description, parser); `loadConfig` validates them all at
 * start-up and throws a ConfigError naming the first bad one. The README table and
 * .env.example are checked against this list by a unit test.
 */
import path from "node:path";

export const SERVICE_NAMES = [
	"api",
	"auth",
	"tenants",
	"devices",
	"media",
	"scheduling",
	"notifications",
	"billing",
	"analytics"
] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

export type NodeEnv = "development" | "production" | "test";
export type LogFormat = "pretty" | "json";
export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace";
export type TracingExporter = "none" | "console" | "zipkin" | "jaeger";

export interface Config {
	nodeEnv: NodeEnv;
	port: number;
	host: string;
	opsPort: number;
	dataDir: string;
	transporter: string | null;
	mongoUri: string | null;
	redisUrl: string | null;
	s3: { endpoint: string | null; publicEndpoint: string | null; accessKey: string; secretKey: string; bucket: string; region: string };
	media: { maxImageBytes: number; maxVideoBytes: number };
	clickhouseUrl: string | null;
	smtpUrl: string | null;
	stripe: { secretKey: string | null; webhookSecret: string | null };
	billing: BillingConfig;
	jwtSecret: string | null;
	/** Earlier signing secrets: tokens they signed still verify until they are removed. */
	jwtPreviousSecrets: string[];
	/** Seals secrets at rest (TOTP secrets, SSO client secrets); generated into DATA_DIR when unset outside production. */
	encryptionKey: string | null;
	/** Earlier encryption keys: what they sealed still opens (key rotation) until removed. */
	encryptionPreviousKeys: string[];
	/** OpenID Connect identity providers may be on loopback or private networks (an on-premises IdP, tests). */
	ssoAllowPrivate: boolean;
	/** DNS servers for domain verification (empty: the system's). */
	dnsServers: string[];
	bcryptCost: number;
	/** Public URL of the CMS, for links in emails. */
	appUrl: string;
	/** Public URL of the API gateway (SSO redirect URIs); null: the request's own Host. */
	publicUrl: string | null;
	mailFrom: string;
	/** The plan of tenants without a subscription (until billing decides). */
	defaultPlan: { displays: number; storageBytes: number; members: number };
	/** Pairing-code requests one client address may make per 10 minutes (a site's screens share one). */
	pairingRequestsPerAddress: number;
	services: ServiceName[];
	/** SERVICES named them (rather than all, by default). */
	servicesNamed: boolean;
	namespace: string;
	logLevel: LogLevel;
	logFormat: LogFormat;
	tracing: { exporter: TracingExporter; endpoint: string | null };
	corsOrigins: string[];
	maxBodyBytes: number;
	rateLimit: { perMinute: number };
	trustProxyHops: number;
	requestTimeoutMs: number;
	shutdownTimeoutMs: number;
	notifications: NotificationsConfig;
	analytics: AnalyticsConfig;
}

export interface AnalyticsConfig {
	/** A batch is inserted at this many rows… */
	batchRows: number;
	/** …or this long after its first row, whichever comes first. */
	batchMs: number;
	/** Months of events kept; older month partitions are dropped. */
	retentionMonths: number;
	/** How often scheduled report emails are looked for. */
	reportsPollMs: number;
}

export interface BillingConfig {
	/** Where the Stripe SDK sends its requests (tests: a local fake); null = Stripe's own API. */
	stripeApiUrl: string | null;
	/** After a failed payment everything works this long; then the tenant has the free plan's limits. */
	graceDays: number;
	/** The per-display paid plan. */
	pro: { stripePriceId: string | null; priceCents: number; maxDisplays: number; storageBytes: number; members: number };
}

export interface NotificationsConfig {
	/** Deliver webhooks to loopback, private and link-local addresses (tests, local development). */
	webhookAllowPrivate: boolean;
	/** Pauses before each retry of a failed webhook delivery; its length is the number of retries. */
	webhookRetryScheduleMs: number[];
	/** A receiver must answer within this. */
	webhookTimeoutMs: number;
	/** An endpoint failing every delivery this long is disabled (and its admins told). */
	webhookDisableAfterMs: number;
	/** Pauses before each retry of an email the mail server refused or could not take. */
	emailRetryScheduleMs: number[];
	/** How often the outbox and delivery workers look for due work. */
	pollMs: number;
	/** How long a worker holds a claimed email or delivery before another may take it over. */
	leaseMs: number;
	/** This many displays of one tenant due to alert together become one digest email. */
	alertDigestThreshold: number;
}

export class ConfigError extends Error {
	constructor(
		readonly variable: string,
		problem: string
	) {
		super(`${variable} ${problem}`);
		this.name = "ConfigError";
	}
}

type Env = Record<string, string | undefined>;

interface Variable {
	name: string;
	/** Shown in the README and .env.example; empty = unset. */
	example: string;
	description: string;
}

/** Every variable, in the order the README lists them. */
export const VARIABLES: Variable[] = [
	{ name: "NODE_ENV", example: "development", description: "`development`, `production` or `test`; production requires `JWT_SECRET` and `ENCRYPTION_KEY` and logs JSON" },
	{ name: "PORT", example: "3000", description: "HTTP port of the API gateway" },
	{ name: "HOST", example: "0.0.0.0", description: "address the gateway binds to" },
	{ name: "OPS_PORT", example: "3001", description: "health and metrics port of a process that does not run the gateway" },
	{ name: "DATA_DIR", example: "./data", description: "embedded-mode data: NeDB files, embedded S3, mail, generated secrets; one process per folder (it holds `DATA_DIR/platform.lock`: a second `npm start`, or `npm run admin`, on it refuses to start)" },
	{ name: "SERVICES", example: "", description: "comma-separated services this process runs (unset = all): " + SERVICE_NAMES.join(", ") },
	{ name: "NAMESPACE", example: "", description: "Moleculer namespace; nodes only see nodes of the same namespace" },
	{ name: "TRANSPORTER", example: "", description: "`nats://host:4222` to run services in several processes; unset = one local process" },
	{ name: "MONGO_URI", example: "", description: "`mongodb://…`; unset = NeDB files under `DATA_DIR/db`" },
	{ name: "REDIS_URL", example: "", description: "`redis://…` for cache, presence, locks and rate limits; unset = in-process memory" },
	{ name: "S3_ENDPOINT", example: "", description: "`http(s)://host:port` of MinIO/S3; unset = embedded S3 server under `DATA_DIR/s3`" },
	{ name: "S3_ACCESS_KEY", example: "", description: "S3 access key (required with `S3_ENDPOINT`)" },
	{ name: "S3_SECRET_KEY", example: "", description: "S3 secret key (required with `S3_ENDPOINT`)" },
	{ name: "S3_BUCKET", example: "marquee", description: "bucket for media objects; created when missing" },
	{ name: "S3_REGION", example: "us-east-1", description: "S3 region" },
	{ name: "S3_PUBLIC_ENDPOINT", example: "", description: "S3 address clients can reach; set = downloads answer 302 to presigned URLs on it, unset = the gateway streams the bytes" },
	{ name: "MAX_IMAGE_MB", example: "50", description: "largest image upload, in MiB (413 beyond)" },
	{ name: "MAX_VIDEO_MB", example: "2048", description: "largest video upload, in MiB (413 beyond)" },
	{ name: "CLICKHOUSE_URL", example: "", description: "`http://user:pass@host:8123/db` of a ClickHouse server (18.16 or later); unset = chDB in-process under `DATA_DIR/analytics` (the optional dependency `chdb`; without it analytics answers 503)" },
	{ name: "ANALYTICS_BATCH_ROWS", example: "10000", description: "analytics inserts a batch at this many rows…" },
	{ name: "ANALYTICS_BATCH_MS", example: "1000", description: "…or this many milliseconds after its first row" },
	{ name: "ANALYTICS_RETENTION_MONTHS", example: "25", description: "months of playback, health, uptime and audit events kept (older month partitions are dropped)" },
	{ name: "ANALYTICS_REPORTS_POLL_MS", example: "300000", description: "how often weekly report emails due are looked for" },
	{ name: "SMTP_URL", example: "", description: "`smtp(s)://user:pass@host:port`; unset = mail written to `DATA_DIR/mail`" },
	{ name: "STRIPE_SECRET_KEY", example: "", description: "enables payments; unset = free plan with limits enforced" },
	{ name: "STRIPE_WEBHOOK_SECRET", example: "", description: "`whsec_…` used to verify Stripe webhooks (required with `STRIPE_SECRET_KEY`)" },
	{ name: "STRIPE_PRICE_PRO", example: "", description: "Stripe price id (`price_…`, per display and month) of the `pro` plan (required with `STRIPE_SECRET_KEY`)" },
	{ name: "STRIPE_API_URL", example: "", description: "`http(s)://host:port` the Stripe SDK talks to instead of Stripe's API (tests, a local fake)" },
	{ name: "BILLING_PRO_PRICE_CENTS", example: "2400", description: "price of the `pro` plan per display and month, in cents (shown in `GET /billing/plans`; Stripe's price decides what is charged)" },
	{ name: "BILLING_PRO_MAX_DISPLAYS", example: "1000", description: "displays one `pro` subscription may have" },
	{ name: "BILLING_PRO_STORAGE_MB", example: "102400", description: "media storage of a `pro` tenant, in MiB" },
	{ name: "BILLING_PRO_MEMBERS", example: "50", description: "members of a `pro` tenant" },
	{ name: "BILLING_GRACE_DAYS", example: "14", description: "days after a failed payment during which everything works; then the tenant has the free plan's limits (nothing is deleted)" },
	{ name: "JWT_SECRET", example: "", description: "≥ 32 characters; required in production, generated into `DATA_DIR` otherwise" },
	{ name: "JWT_PREVIOUS_SECRETS", example: "", description: "comma-separated earlier secrets: their tokens still verify (key rotation) until removed" },
	{ name: "ENCRYPTION_KEY", example: "", description: "≥ 32 characters; seals secrets at rest (two-factor secrets, SSO client secrets); required in production, generated into `DATA_DIR` otherwise. Changing it makes those secrets unreadable" },
	{ name: "ENCRYPTION_PREVIOUS_KEYS", example: "", description: "comma-separated earlier encryption keys: secrets they sealed still open (key rotation); new ones are sealed with `ENCRYPTION_KEY`" },
	{ name: "SSO_ALLOW_PRIVATE", example: "false", description: "`true` lets single sign-on reach identity providers on loopback or private addresses (an on-premises IdP, tests); off, an issuer must resolve to public addresses" },
	{ name: "DNS_SERVERS", example: "", description: "comma-separated DNS servers (`ip` or `ip:port`) that single sign-on's domain verification asks for TXT records; unset, the system's resolvers" },
	{ name: "BCRYPT_COST", example: "12", description: "bcrypt cost of password hashes (≥ 12 in production)" },
	{ name: "APP_URL", example: "http://localhost:3000", description: "public URL of the CMS, used in links of emails" },
	{ name: "PUBLIC_URL", example: "", description: "public URL of the API gateway, used in single sign-on redirect URIs (register `<PUBLIC_URL>/api/v1/auth/sso/<slug>/callback` at the identity provider); unset, the request's Host is used over http" },
	{ name: "MAIL_FROM", example: "Marquee <no-reply@marquee.local>", description: "sender of emails" },
	{ name: "DEFAULT_PLAN_DISPLAYS", example: "3", description: "displays a tenant without a subscription may pair" },
	{ name: "DEFAULT_PLAN_STORAGE_MB", example: "1024", description: "media storage of a tenant without a subscription, in MiB" },
	{ name: "PAIRING_REQUESTS_PER_ADDRESS", example: "20", description: "pairing codes one client address may ask for per 10 minutes (raise it where many screens share an address; provisioning keys are the other way)" },
	{ name: "DEFAULT_PLAN_MEMBERS", example: "5", description: "members of a tenant without a subscription" },
	{ name: "LOG_LEVEL", example: "", description: "fatal, error, warn, info, debug or trace (default: info in production, warn otherwise, so `npm start` shows its banner and real warnings only)" },
	{ name: "LOG_FORMAT", example: "", description: "`pretty` or `json` (default: json in production, pretty otherwise)" },
	{ name: "TRACING_EXPORTER", example: "none", description: "none, console, zipkin or jaeger (spans carry no params, meta, responses, query strings, error data or messages)" },
	{ name: "TRACING_ENDPOINT", example: "", description: "collector URL for zipkin or jaeger" },
	{ name: "CORS_ORIGINS", example: "", description: "comma-separated allowed browser origins (unset = no cross-origin access)" },
	{ name: "MAX_BODY_BYTES", example: "1048576", description: "largest JSON body the gateway accepts (413 beyond)" },
	{ name: "RATE_LIMIT_PER_MINUTE", example: "600", description: "requests per minute per principal (or client address when anonymous)" },
	{ name: "TRUST_PROXY_HOPS", example: "0", description: "reverse proxies in front of the gateway whose `X-Forwarded-For` entry is trusted" },
	{ name: "REQUEST_TIMEOUT_MS", example: "30000", description: "action call timeout" },
	{ name: "SHUTDOWN_TIMEOUT_MS", example: "10000", description: "how long SIGTERM waits for in-flight requests" },
	{ name: "WEBHOOK_ALLOW_PRIVATE", example: "false", description: "`true` lets webhooks reach loopback, private and link-local addresses (tests, local development); never in production" },
	{ name: "WEBHOOK_RETRY_SCHEDULE", example: "5s,5m,30m,2h,5h,10h,10h", description: "pauses before each retry of a failed webhook delivery (s, m, h or ms)" },
	{ name: "WEBHOOK_TIMEOUT_MS", example: "15000", description: "a webhook receiver must answer 2xx within this" },
	{ name: "WEBHOOK_DISABLE_AFTER_HOURS", example: "120", description: "an endpoint failing every delivery this long is disabled and its admins are told" },
	{ name: "EMAIL_RETRY_SCHEDULE", example: "10s,1m,5m,15m,1h,3h,6h", description: "pauses before each retry of an email the mail server did not take" },
	{ name: "NOTIFICATIONS_POLL_MS", example: "1000", description: "how often the email and webhook workers look for due work" },
	{ name: "NOTIFICATIONS_LEASE_MS", example: "60000", description: "how long a worker holds a claimed email or delivery before another replica may take it over" },
	{ name: "ALERT_DIGEST_THRESHOLD", example: "5", description: "this many displays of one tenant going dark together are reported in one digest email" }
];

const LOG_LEVELS: LogLevel[] = ["fatal", "error", "warn", "info", "debug", "trace"];
const TRACING_EXPORTERS: TracingExporter[] = ["none", "console", "zipkin", "jaeger"];

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
	const raw = env[name];
	if (raw === undefined || raw === "") return fallback;
	if (!/^\d+$/.test(raw.trim())) throw new ConfigError(name, `must be a whole number, got "${raw}"`);
	const value = Number(raw.trim());
	if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
	return value;
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
	const raw = env[name];
	if (raw === undefined || raw === "") return fallback;
	if (!(allowed as readonly string[]).includes(raw)) {
		throw new ConfigError(name, `must be one of ${allowed.join(", ")}, got "${raw}"`);
	}
	return raw as T;
}

/** MongoDB URIs may list several hosts (replica sets), which the WHATWG URL parser refuses. */
const MONGO_URI = /^mongodb(\+srv)?:\/\/([^@/\s]+@)?[^@/?#\s]+(\/[^?#\s]*)?(\?[^#\s]*)?$/;

/** Parses a URL whose scheme is one of `schemes`; unset → null. The message never echoes credentials. */
function url(env: Env, name: string, schemes: string[]): string | null {
	const raw = env[name]?.trim();
	if (raw === undefined || raw === "") return null;
	const schemeList = schemes.map(s => `${s}://`).join(" or ");
	const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(raw)?.[1].toLowerCase();
	if (!scheme) throw new ConfigError(name, `must be a URL starting with ${schemeList}`);
	if (!schemes.includes(scheme)) throw new ConfigError(name, `must start with ${schemeList}, got "${scheme}://…"`);
	if (scheme.startsWith("mongodb")) {
		if (!MONGO_URI.test(raw)) throw new ConfigError(name, `must be a URL starting with ${schemeList}`);
		return raw;
	}
	let parsed: URL;
	try {
		parsed = new URL(raw);
	} catch {
		throw new ConfigError(name, `must be a URL starting with ${schemeList}`);
	}
	if (!parsed.hostname) throw new ConfigError(name, "has no host");
	return raw;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A comma-separated list of durations (`5s,5m,2h`, `250ms`); unset → `fallback`. */
function durations(env: Env, name: string, fallback: string): number[] {
	const raw = (env[name] ?? "").trim() || fallback;
	return raw.split(",").map(part => {
		const match = /^(\d+)(ms|s|m|h)$/.exec(part.trim());
		if (!match) throw new ConfigError(name, `must be durations like 5s,5m,2h separated by commas, got "${part.trim()}"`);
		const ms = Number(match[1]) * DURATION_UNITS[match[2]];
		if (ms > 7 * 24 * 3_600_000) throw new ConfigError(name, `entries must be at most 7 days, got "${part.trim()}"`);
		return ms;
	});
}

function bool(env: Env, name: string, fallback: boolean): boolean {
	const raw = (env[name] ?? "").trim().toLowerCase();
	if (raw === "") return fallback;
	if (raw === "true" || raw === "1") return true;
	if (raw === "false" || raw === "0") return false;
	throw new ConfigError(name, `must be true or false, got "${env[name]}"`);
}

function list(env: Env, name: string): string[] {
	return (env[name] ?? "")
		.split(",")
		.map(s => s.trim())
		.filter(Boolean);
}

function services(env: Env): ServiceName[] {
	const names = list(env, "SERVICES");
	if (names.length === 0 || names.includes("*") || names.includes("all")) return [...SERVICE_NAMES];
	for (const name of names) {
		if (!(SERVICE_NAMES as readonly string[]).includes(name)) {
			throw new ConfigError("SERVICES", `names an unknown service "${name}" (known: ${SERVICE_NAMES.join(", ")})`);
		}
	}
	return SERVICE_NAMES.filter(name => names.includes(name));
}

function corsOrigins(env: Env): string[] {
	const origins = list(env, "CORS_ORIGINS");
	for (const origin of origins) {
		if (origin === "*") continue;
		let parsed: URL | null = null;
		try {
			parsed = new URL(origin);
		} catch {
			/* reported below */
		}
		if (!parsed || !["http:", "https:"].includes(parsed.protocol) || parsed.origin !== origin.replace(/\/$/, "")) {
			throw new ConfigError("CORS_ORIGINS", `entry "${origin}" is not an origin like https://cms.example.com`);
		}
	}
	return origins.map(o => o.replace(/\/$/, ""));
}

export function loadConfig(env: Env = process.env): Config {
	const nodeEnv = oneOf<NodeEnv>(env, "NODE_ENV", ["development", "production", "test"], "development");
	const production = nodeEnv === "production";

	const s3Endpoint = url(env, "S3_ENDPOINT", ["http", "https"]);
	if (s3Endpoint && (!env.S3_ACCESS_KEY || !env.S3_SECRET_KEY)) {
		throw new ConfigError(env.S3_ACCESS_KEY ? "S3_SECRET_KEY" : "S3_ACCESS_KEY", "is required when S3_ENDPOINT is set");
	}
	const bucket = env.S3_BUCKET || "marquee";
	if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
		throw new ConfigError("S3_BUCKET", `is not a valid bucket name: "${bucket}"`);
	}

	const jwtSecret = env.JWT_SECRET || null;
	if (jwtSecret !== null && jwtSecret.length < 32) throw new ConfigError("JWT_SECRET", "must be at least 32 characters");
	if (production && jwtSecret === null) throw new ConfigError("JWT_SECRET", "is required when NODE_ENV=production");

	const jwtPreviousSecrets = list(env, "JWT_PREVIOUS_SECRETS");
	if (jwtPreviousSecrets.some(secret => secret.length < 32)) {
		throw new ConfigError("JWT_PREVIOUS_SECRETS", "entries must be at least 32 characters");
	}
	const dnsServers = list(env, "DNS_SERVERS");
	if (dnsServers.some(server => !/^(\d{1,3}(\.\d{1,3}){3}(:\d{1,5})?|\[?[0-9a-f:]+\]?(:\d{1,5})?)$/i.test(server))) {
		throw new ConfigError("DNS_SERVERS", "entries must be IP addresses, optionally with :port");
	}
	const encryptionKey = env.ENCRYPTION_KEY || null;
	if (encryptionKey !== null && encryptionKey.length < 32) throw new ConfigError("ENCRYPTION_KEY", "must be at least 32 characters");
	if (production && encryptionKey === null) throw new ConfigError("ENCRYPTION_KEY", "is required when NODE_ENV=production");
	const encryptionPreviousKeys = list(env, "ENCRYPTION_PREVIOUS_KEYS");
	if (encryptionPreviousKeys.some(key => key.length < 32)) throw new ConfigError("ENCRYPTION_PREVIOUS_KEYS", "entries must be at least 32 characters");
	const bcryptCost = integer(env, "BCRYPT_COST", nodeEnv === "test" ? 4 : 12, 4, 15);
	if (production && bcryptCost < 12) throw new ConfigError("BCRYPT_COST", "must be at least 12 when NODE_ENV=production");
	const appUrl = url(env, "APP_URL", ["http", "https"]) ?? `http://localhost:${env.PORT || 3000}`;

	const transporter = url(env, "TRANSPORTER", ["nats"]);
	const tracingExporter = oneOf(env, "TRACING_EXPORTER", TRACING_EXPORTERS, "none");
	const tracingEndpoint = url(env, "TRACING_ENDPOINT", ["http", "https"]);
	if ((tracingExporter === "zipkin" || tracingExporter === "jaeger") && !tracingEndpoint) {
		throw new ConfigError("TRACING_ENDPOINT", `is required when TRACING_EXPORTER=${tracingExporter}`);
	}

	if (production && bool(env, "WEBHOOK_ALLOW_PRIVATE", false)) throw new ConfigError("WEBHOOK_ALLOW_PRIVATE", "must not be true when NODE_ENV=production");

	const stripeSecretKey = env.STRIPE_SECRET_KEY || null;
	if (stripeSecretKey && !env.STRIPE_WEBHOOK_SECRET) throw new ConfigError("STRIPE_WEBHOOK_SECRET", "is required when STRIPE_SECRET_KEY is set");
	if (stripeSecretKey && !env.STRIPE_PRICE_PRO) throw new ConfigError("STRIPE_PRICE_PRO", "is required when STRIPE_SECRET_KEY is set");

	const namespace = env.NAMESPACE ?? "";
	if (!/^[A-Za-z0-9_-]{0,64}$/.test(namespace)) throw new ConfigError("NAMESPACE", "may hold only letters, digits, - and _");

	return {
		nodeEnv,
		port: integer(env, "PORT", 3000, 0, 65535),
		host: env.HOST || "0.0.0.0",
		opsPort: integer(env, "OPS_PORT", 3001, 0, 65535),
		dataDir: path.resolve(env.DATA_DIR || "./data"),
		transporter,
		mongoUri: url(env, "MONGO_URI", ["mongodb", "mongodb+srv"]),
		redisUrl: url(env, "REDIS_URL", ["redis", "rediss"]),
		s3: {
			endpoint: s3Endpoint,
			publicEndpoint: url(env, "S3_PUBLIC_ENDPOINT", ["http", "https"]),
			accessKey: env.S3_ACCESS_KEY ?? "",
			secretKey: env.S3_SECRET_KEY ?? "",
			bucket,
			region: env.S3_REGION || "us-east-1"
		},
		media: {
			maxImageBytes: integer(env, "MAX_IMAGE_MB", 50, 1, 10_000) * 1024 * 1024,
			maxVideoBytes: integer(env, "MAX_VIDEO_MB", 2048, 1, 100_000) * 1024 * 1024
		},
		clickhouseUrl: url(env, "CLICKHOUSE_URL", ["http", "https"]),
		smtpUrl: url(env, "SMTP_URL", ["smtp", "smtps"]),
		stripe: { secretKey: stripeSecretKey, webhookSecret: env.STRIPE_WEBHOOK_SECRET || null },
		billing: {
			stripeApiUrl: url(env, "STRIPE_API_URL", ["http", "https"]),
			graceDays: integer(env, "BILLING_GRACE_DAYS", 14, 0, 365),
			pro: {
				stripePriceId: env.STRIPE_PRICE_PRO || null,
				priceCents: integer(env, "BILLING_PRO_PRICE_CENTS", 2400, 0, 100_000_000),
				maxDisplays: integer(env, "BILLING_PRO_MAX_DISPLAYS", 1000, 1, 1_000_000),
				storageBytes: integer(env, "BILLING_PRO_STORAGE_MB", 102_400, 0, 100_000_000) * 1024 * 1024,
				members: integer(env, "BILLING_PRO_MEMBERS", 50, 1, 1_000_000)
			}
		},
		jwtSecret,
		jwtPreviousSecrets,
		encryptionKey,
		encryptionPreviousKeys,
		ssoAllowPrivate: bool(env, "SSO_ALLOW_PRIVATE", false),
		dnsServers,
		bcryptCost,
		appUrl: appUrl.replace(/\/$/, ""),
		publicUrl: url(env, "PUBLIC_URL", ["http", "https"])?.replace(/\/$/, "") ?? null,
		mailFrom: env.MAIL_FROM || "Marquee <no-reply@marquee.local>",
		pairingRequestsPerAddress: integer(env, "PAIRING_REQUESTS_PER_ADDRESS", 20, 1, 1_000_000),
		defaultPlan: {
			displays: integer(env, "DEFAULT_PLAN_DISPLAYS", 3, 0, 1_000_000),
			storageBytes: integer(env, "DEFAULT_PLAN_STORAGE_MB", 1024, 0, 100_000_000) * 1024 * 1024,
			members: integer(env, "DEFAULT_PLAN_MEMBERS", 5, 1, 1_000_000)
		},
		services: services(env),
		servicesNamed: list(env, "SERVICES").some(name => name !== "*" && name !== "all"),
		namespace,
		logLevel: oneOf(env, "LOG_LEVEL", LOG_LEVELS, production ? "info" : "warn"),
		logFormat: oneOf<LogFormat>(env, "LOG_FORMAT", ["pretty", "json"], production ? "json" : "pretty"),
		tracing: { exporter: tracingExporter, endpoint: tracingEndpoint },
		corsOrigins: corsOrigins(env),
		maxBodyBytes: integer(env, "MAX_BODY_BYTES", 1024 * 1024, 1024, 100 * 1024 * 1024),
		rateLimit: { perMinute: integer(env, "RATE_LIMIT_PER_MINUTE", 600, 1, 1_000_000) },
		trustProxyHops: integer(env, "TRUST_PROXY_HOPS", 0, 0, 10),
		requestTimeoutMs: integer(env, "REQUEST_TIMEOUT_MS", 30_000, 100, 600_000),
		shutdownTimeoutMs: integer(env, "SHUTDOWN_TIMEOUT_MS", 10_000, 0, 600_000),
		notifications: {
			webhookAllowPrivate: bool(env, "WEBHOOK_ALLOW_PRIVATE", false),
			webhookRetryScheduleMs: durations(env, "WEBHOOK_RETRY_SCHEDULE", "5s,5m,30m,2h,5h,10h,10h"),
			webhookTimeoutMs: integer(env, "WEBHOOK_TIMEOUT_MS", 15_000, 100, 120_000),
			webhookDisableAfterMs: integer(env, "WEBHOOK_DISABLE_AFTER_HOURS", 120, 1, 24 * 365) * 3_600_000,
			emailRetryScheduleMs: durations(env, "EMAIL_RETRY_SCHEDULE", "10s,1m,5m,15m,1h,3h,6h"),
			pollMs: integer(env, "NOTIFICATIONS_POLL_MS", 1000, 10, 600_000),
			leaseMs: integer(env, "NOTIFICATIONS_LEASE_MS", 60_000, 100, 3_600_000),
			alertDigestThreshold: integer(env, "ALERT_DIGEST_THRESHOLD", 5, 2, 100_000)
		},
		analytics: {
			batchRows: integer(env, "ANALYTICS_BATCH_ROWS", 10_000, 1, 1_000_000),
			batchMs: integer(env, "ANALYTICS_BATCH_MS", 1000, 1, 60_000),
			retentionMonths: integer(env, "ANALYTICS_RETENTION_MONTHS", 25, 1, 1200),
			reportsPollMs: integer(env, "ANALYTICS_REPORTS_POLL_MS", 300_000, 100, 86_400_000)
		}
	};
}

let current: Config | null = null;

/** The process's config, loaded from the environment on first use. */
export function getConfig(): Config {
	current ??= loadConfig();
	return current;
}

/** Replaces the process's config (server start-up and tests). */
export function setConfig(config: Config): void {
	current = config;
}
