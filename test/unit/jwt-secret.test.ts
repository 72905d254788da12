/** shared/jwt-secret.ts: JWT_SECRET wins; otherwise one secret generated into DATA_DIR and kept. */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { JWT_SECRET_FILE, resolveJwtSecret } from "../../shared/jwt-secret";

const POSIX = process.platform !== "win32";
const posixIt = POSIX ? it : it.skip;

let root: string;
let dataDir: string;

beforeEach(() => {
	root = mkdtempSync(path.join(os.tmpdir(), "marquee-jwt-"));
	dataDir = path.join(root, "data");
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const secretFile = (): string => path.join(dataDir, "secrets", "jwt-secret");
const modeOf = (file: string): number => statSync(file).mode & 0o777;
const embedded = (nodeEnv = "development") => ({ jwtSecret: null, dataDir, nodeEnv });

describe("resolveJwtSecret", () => {
	it("returns the configured secret and writes nothing", () => {
		const configured = "configured-secret-0123456789abcdefghijkl";
		expect(resolveJwtSecret({ jwtSecret: configured, dataDir, nodeEnv: "production" })).toBe(configured);
		expect(resolveJwtSecret({ jwtSecret: configured, dataDir, nodeEnv: "development" })).toBe(configured);
		expect(existsSync(dataDir)).toBe(false);
	});

	it("prefers the configured secret over a stored one", () => {
		const stored = resolveJwtSecret(embedded());
		const configured = "configured-secret-0123456789abcdefghijkl";
		expect(resolveJwtSecret({ jwtSecret: configured, dataDir, nodeEnv: "development" })).toBe(configured);
		expect(readFileSync(secretFile(), "utf8").trim()).toBe(stored);
	});

	it("generates 48 random bytes as base64url into DATA_DIR/secrets/jwt-secret", () => {
		const secret = resolveJwtSecret(embedded());
		expect(secret).toMatch(/^[A-Za-z0-9_-]{64}$/);
		expect(Buffer.from(secret, "base64url")).toHaveLength(48);
		expect(JWT_SECRET_FILE).toBe(path.join("secrets", "jwt-secret"));
		expect(readFileSync(secretFile(), "utf8")).toBe(secret + "\n");
	});

	it("is generated once and reused by later calls", () => {
		const first = resolveJwtSecret(embedded());
		expect(resolveJwtSecret(embedded())).toBe(first);
		expect(resolveJwtSecret(embedded("test"))).toBe(first);
	});

	it("survives a restart: a fresh copy of the module reads the same secret", () => {
		const first = resolveJwtSecret(embedded());
		jest.isolateModules(() => {
			// eslint-disable-next-line @typescript-eslint/no-require-imports
			const fresh = require("../../shared/jwt-secret") as typeof import("../../shared/jwt-secret");
			expect(fresh.resolveJwtSecret(embedded())).toBe(first);
		});
	});

	it("gives different data directories different secrets", () => {
		const a = resolveJwtSecret(embedded());
		const b = resolveJwtSecret({ jwtSecret: null, dataDir: path.join(root, "other"), nodeEnv: "development" });
		expect(a).not.toBe(b);
	});

	it("treats an empty configured secret as unset", () => {
		const secret = resolveJwtSecret({ jwtSecret: "", dataDir, nodeEnv: "test" });
		expect(secret).toHaveLength(64);
		expect(existsSync(secretFile())).toBe(true);
	});

	it("creates missing parent folders", () => {
		dataDir = path.join(root, "deep", "er", "data");
		expect(resolveJwtSecret(embedded())).toHaveLength(64);
		expect(existsSync(secretFile())).toBe(true);
	});

	it("leaves no temporary files behind", () => {
		resolveJwtSecret(embedded());
		resolveJwtSecret(embedded());
		expect(readdirSync(path.join(dataDir, "secrets"))).toEqual(["jwt-secret"]);
	});

	posixIt("writes the file 0600 in a 0700 folder, even with a permissive umask", () => {
		const previous = process.umask(0);
		try {
			resolveJwtSecret(embedded());
		} finally {
			process.umask(previous);
		}
		expect(modeOf(secretFile())).toBe(0o600);
		expect(modeOf(path.join(dataDir, "secrets"))).toBe(0o700);
	});

	posixIt("tightens loose permissions of an existing file and folder", () => {
		const secret = resolveJwtSecret(embedded());
		chmodSync(secretFile(), 0o644);
		chmodSync(path.join(dataDir, "secrets"), 0o755);
		expect(resolveJwtSecret(embedded())).toBe(secret);
		expect(modeOf(secretFile())).toBe(0o600);
		expect(modeOf(path.join(dataDir, "secrets"))).toBe(0o700);
	});

	it("uses a secret placed in the file by hand (trimmed)", () => {
		const own = "operator-provided-secret-0123456789abcdef";
		mkdirSync(path.join(dataDir, "secrets"), { recursive: true });
		writeFileSync(secretFile(), `  ${own}\n\n`, { mode: 0o600 });
		expect(resolveJwtSecret(embedded())).toBe(own);
	});

	it("refuses a stored secret that is empty or too short instead of replacing it", () => {
		mkdirSync(path.join(dataDir, "secrets"), { recursive: true });
		writeFileSync(secretFile(), "", { mode: 0o600 });
		expect(() => resolveJwtSecret(embedded())).toThrow(/no valid secret/);
		writeFileSync(secretFile(), "short\n", { mode: 0o600 });
		expect(() => resolveJwtSecret(embedded())).toThrow(/delete it/);
		expect(readFileSync(secretFile(), "utf8")).toBe("short\n");
	});

	it("never generates a secret in production", () => {
		expect(() => resolveJwtSecret(embedded("production"))).toThrow(/JWT_SECRET is required/);
		expect(existsSync(dataDir)).toBe(false);
	});

	describe("when another process creates the file at the same moment", () => {
		type Module = typeof import("../../shared/jwt-secret");
		type Fs = typeof import("node:fs");

		/** A fresh copy of the module whose fs.linkSync is replaced by `linkSync(real, src, dst)`. */
		function withLink(linkSync: (real: Fs, src: string, dst: string) => void): Module {
			let loaded: Module | undefined;
			jest.isolateModules(() => {
				const real = jest.requireActual<Fs>("node:fs");
				jest.doMock("node:fs", () => ({ ...real, linkSync: (src: string, dst: string) => linkSync(real, src, dst) }));
				// eslint-disable-next-line @typescript-eslint/no-require-imports
				loaded = require("../../shared/jwt-secret") as Module;
			});
			jest.dontMock("node:fs");
			return loaded as Module;
		}

		const theirs = "the-other-process-secret-0123456789abcdefghij";

		it("uses the secret of the process that won (first writer wins, nothing overwritten)", () => {
			const racing = withLink((real, src, dst) => {
				real.writeFileSync(dst, theirs + "\n", { mode: 0o600 });
				real.linkSync(src, dst);
			});
			expect(racing.resolveJwtSecret(embedded())).toBe(theirs);
			expect(readFileSync(secretFile(), "utf8")).toBe(theirs + "\n");
			expect(readdirSync(path.join(dataDir, "secrets"))).toEqual(["jwt-secret"]);
		});

		it("falls back to an exclusive create where hard links are not supported", () => {
			const noLinks = withLink(() => {
				throw Object.assign(new Error("operation not permitted"), { code: "EPERM" });
			});
			const secret = noLinks.resolveJwtSecret(embedded());
			expect(secret).toMatch(/^[A-Za-z0-9_-]{64}$/);
			expect(readFileSync(secretFile(), "utf8")).toBe(secret + "\n");
			expect(readdirSync(path.join(dataDir, "secrets"))).toEqual(["jwt-secret"]);
			if (POSIX) expect(modeOf(secretFile())).toBe(0o600);
			expect(resolveJwtSecret(embedded())).toBe(secret);
		});

		it("still lets the winner win without hard links", () => {
			const noLinksRacing = withLink(real => {
				real.writeFileSync(secretFile(), theirs + "\n", { mode: 0o600 });
				throw Object.assign(new Error("not supported"), { code: "ENOTSUP" });
			});
			expect(noLinksRacing.resolveJwtSecret(embedded())).toBe(theirs);
			expect(readdirSync(path.join(dataDir, "secrets"))).toEqual(["jwt-secret"]);
		});

		it("reports other link errors and cleans up its temporary file", () => {
			const broken = withLink(() => {
				throw Object.assign(new Error("disk on fire"), { code: "EIO" });
			});
			expect(() => broken.resolveJwtSecret(embedded())).toThrow(/disk on fire/);
			expect(readdirSync(path.join(dataDir, "secrets"))).toEqual([]);
		});
	});

	it("reports a DATA_DIR that cannot hold the secret", () => {
		writeFileSync(path.join(root, "file"), "x");
		expect(() => resolveJwtSecret({ jwtSecret: null, dataDir: path.join(root, "file"), nodeEnv: "development" })).toThrow();
	});
});
