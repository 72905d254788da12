/**
 * Device tokens the gateway has seen auth accept, so a screen's heartbeat does not cost a call to
 * auth (over NATS, in a split deployment) on every request.
 *
 * A remembered token is served only while the display's device-token version in the shared
 * key/value store (the contract of shared/contracts/auth.ts) still names it: auth moves that
 * entry when it mints a new token and when it revokes one, so a deleted display, a deleted tenant
 * or a re-registered screen's old token is refused at the very next request, on every replica.
 * Anything else — a token not remembered, an entry gone from the store, an entry that moved, a
 * memory older than `maxAgeMs` (which bounds how long a token signed by a key that has since left
 * the key set is served, like the live stream's re-check) — goes to auth, which decides.
 *
 * Only device principals are remembered; user tokens and API keys are resolved by auth each time.
 */
import { deviceTokenVersion, deviceVersionKey } from "../../shared/contracts";
import type { KeyValueStore, KvGuard } from "../../shared/kv";
import type { Principal } from "../../shared/rbac";

interface Remembered {
	principal: Principal;
	/** The display's version entry and the value it held when the token was minted (`<tenantId>:<version>`). */
	current: KvGuard;
	/** When auth must be asked again (ms). */
	until: number;
}

export interface DevicePrincipalOptions {
	/** At most this many tokens are remembered; the oldest goes first. */
	maxEntries?: number;
	/** A remembered token is checked with auth again after this long. */
	maxAgeMs?: number;
	now?: () => number;
}

export class DevicePrincipals {
	private readonly entries = new Map<string, Remembered>();
	private readonly maxEntries: number;
	private readonly maxAgeMs: number;
	private readonly now: () => number;

	constructor(
		private readonly kv: KeyValueStore,
		/** auth's answer for a token: its principal, null or a 401 when it is not valid. */
		private readonly askAuth: (token: string) => Promise<Principal | null>,
		options: DevicePrincipalOptions = {}
	) {
		this.maxEntries = options.maxEntries ?? 200_000;
		this.maxAgeMs = options.maxAgeMs ?? 5 * 60_000;
		this.now = options.now ?? Date.now;
	}

	/** The principal behind `token`: from memory while the store agrees, else auth's answer. */
	async resolve(token: string): Promise<Principal | null> {
		const known = this.recall(token);
		if (known) {
			if ((await this.kv.get(known.current.key)) === known.current.equals) return known.principal;
			this.forget(token);
		}
		const principal = await this.askAuth(token);
		if (principal?.kind === "device") this.remember(token, principal);
		return principal;
	}

	/**
	 * A remembered token not yet due for auth again: its principal, and the store entry that must
	 * still name it (`current`) — for a caller that checks it alongside other work in one round
	 * trip (the gateway counts the rate limit with it); `forget` the token when it does not.
	 */
	recall(token: string): { principal: Principal; current: KvGuard } | null {
		const known = this.entries.get(token);
		if (!known) return null;
		if (known.until > this.now()) return known;
		this.forget(token);
		return null;
	}

	forget(token: string): void {
		this.entries.delete(token);
	}

	get size(): number {
		return this.entries.size;
	}

	private remember(token: string, principal: Principal): void {
		const named = deviceTokenVersion(token);
		// auth accepted it, so it names its display; a mismatch would be a bug, never a reason to trust.
		if (!named || named.displayId !== principal.displayId || named.tenantId !== principal.tenantId) return;
		if (this.entries.size >= this.maxEntries) {
			const oldest = this.entries.keys().next();
			if (!oldest.done) this.entries.delete(oldest.value);
		}
		// One object serves every request of the token: frozen, so no handler can change it for the next.
		this.entries.set(token, { principal: Object.freeze({ ...principal }), current: { key: deviceVersionKey(named.displayId), equals: named.version }, until: this.now() + this.maxAgeMs });
	}
}
