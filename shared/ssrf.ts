/**
 * The SSRF guard of webhook deliveries: a tenant names a URL and the platform POSTs to it from
 * inside the cluster, so a URL that is (or resolves to) loopback, a private network, link-local
 * (the cloud metadata service at 169.254.169.254), or any address that is not the public
 * internet would let a tenant reach what only the platform should.
 *
 * The check runs on the addresses the name resolves to, not on the name, and at delivery time
 * as well as at creation: a name can point somewhere else later (a DNS rebind). The addresses
 * checked are the ones connected to (`pinnedLookup`), so nothing resolves the name a second
 * time between the check and the connection.
 *
 * Kept in the notifications folder: webhooks are the only place the server itself requests a
 * URL a tenant chose (a web content URL of POST /content/url is loaded by displays, not here).
 * Nothing in it is webhook-specific, so it can move to shared/ when a second caller appears.
 */
import dns from "node:dns";
import net, { type LookupFunction } from "node:net";

export interface ResolvedAddress {
	address: string;
	family: 4 | 6;
}

/** A host name's addresses (the operating system's resolver by default; tests inject their own). */
export type Resolve = (hostname: string) => Promise<ResolvedAddress[]>;

export const systemResolve: Resolve = async hostname => {
	const found = await dns.promises.lookup(hostname, { all: true, verbatim: true });
	return found.map(a => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

export class DestinationError extends Error {
	constructor(
		message: string,
		/** invalid: not an http(s) URL; refused: a non-public address; unresolved: the name has no address (now). */
		readonly kind: "invalid" | "refused" | "unresolved"
	) {
		super(message);
		this.name = "DestinationError";
	}
}

// ---- address classification -------------------------------------------------------------------

type Range4 = [base: number, bits: number, label: string];

function ipv4ToInt(text: string): number {
	return text.split(".").reduce((n, part) => n * 256 + Number(part), 0);
}

const V4 = (cidr: string, label: string): Range4 => {
	const [base, bits] = cidr.split("/");
	return [ipv4ToInt(base), Number(bits), label];
};

/** IPv4 blocks that are not the public internet (RFC 6890 special-purpose registry, the ones that matter). */
const IPV4_BLOCKED: Range4[] = [
	V4("0.0.0.0/8", "unspecified"),
	V4("10.0.0.0/8", "private"),
	V4("100.64.0.0/10", "carrier-grade NAT"),
	V4("127.0.0.0/8", "loopback"),
	V4("169.254.0.0/16", "link-local"),
	V4("172.16.0.0/12", "private"),
	V4("192.0.0.0/24", "reserved"),
	V4("192.0.2.0/24", "reserved"),
	V4("192.168.0.0/16", "private"),
	V4("198.18.0.0/15", "reserved"),
	V4("198.51.100.0/24", "reserved"),
	V4("203.0.113.0/24", "reserved"),
	V4("224.0.0.0/4", "multicast"),
	V4("240.0.0.0/4", "reserved")
];

function classifyIPv4(n: number): string | null {
	for (const [base, bits, label] of IPV4_BLOCKED) {
		const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
		if ((n & mask) >>> 0 === (base & mask) >>> 0) return label;
	}
	return null;
}

/** An IPv6 address as 8 16-bit groups (zone id dropped, a trailing dotted quad folded in); null when malformed. */
export function parseIPv6(text: string): number[] | null {
	let s = text.replace(/^\[|\]$/g, "").replace(/%.*$/, "");
	if (net.isIPv6(s) === false) return null;
	const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
	if (dotted) {
		const n = ipv4ToInt(dotted[1]);
		s = `${s.slice(0, -dotted[1].length)}${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
	}
	const [head, tail] = s.includes("::") ? s.split("::") : [s, null];
	const left = head ? head.split(":") : [];
	const right = tail ? tail.split(":") : [];
	const missing = 8 - left.length - right.length;
	if (tail === null ? missing !== 0 : missing < 1) return null;
	const groups = [...left, ...Array<string>(tail === null ? 0 : missing).fill("0"), ...right].map(g => parseInt(g, 16));
	return groups.length === 8 && groups.every(g => g >= 0 && g <= 0xffff) ? groups : null;
}

function classifyIPv6(g: number[]): string | null {
	const v4At = (hi: number, lo: number) => classifyIPv4(((g[hi] << 16) >>> 0) + g[lo]);
	const zeros = (from: number, to: number) => g.slice(from, to).every(x => x === 0);
	if (zeros(0, 8)) return "unspecified";
	if (zeros(0, 7) && g[7] === 1) return "loopback";
	// IPv4-mapped (::ffff:a.b.c.d) and the deprecated IPv4-compatible (::a.b.c.d): the IPv4 address decides.
	if (zeros(0, 5) && g[5] === 0xffff) return v4At(6, 7);
	if (zeros(0, 6)) return v4At(6, 7);
	// IPv4-translated (::ffff:0:a.b.c.d, RFC 2765/SIIT): a stateless translator hands it to the IPv4 address.
	if (zeros(0, 4) && g[4] === 0xffff && g[5] === 0) return v4At(6, 7);
	// NAT64 (64:ff9b::a.b.c.d) and 6to4 (2002:AABB:CCDD::) carry an IPv4 address a gateway may reach.
	if (g[0] === 0x64 && g[1] === 0xff9b && zeros(2, 6)) return v4At(6, 7);
	// Local-use NAT64 (64:ff9b:1::/48, RFC 8215): a network's own translator, the IPv4 part placed as it likes.
	if (g[0] === 0x64 && g[1] === 0xff9b && g[2] === 1) return "reserved";
	if (g[0] === 0x2002) return v4At(1, 2);
	if ((g[0] & 0xfe00) === 0xfc00) return "private"; // fc00::/7 unique local (includes fd00:ec2::254, a metadata address)
	if ((g[0] & 0xffc0) === 0xfe80) return "link-local"; // fe80::/10
	if ((g[0] & 0xffc0) === 0xfec0) return "private"; // fec0::/10 site-local (deprecated, still routed inside some networks)
	if ((g[0] & 0xff00) === 0xff00) return "multicast"; // ff00::/8
	if (g[0] === 0x100 && zeros(1, 4)) return "reserved"; // 100::/64 discard
	if (g[0] === 0x2001 && g[1] === 0xdb8) return "reserved"; // documentation
	return null;
}

/**
 * Why `address` is not a public internet address ("loopback", "private", "link-local",
 * "carrier-grade NAT", "unspecified", "multicast", "reserved"), or null when it is public.
 * Anything that is not a well-formed IP address counts as "invalid".
 */
export function classifyAddress(address: string): string | null {
	const bare = address.replace(/^\[|\]$/g, "");
	if (net.isIPv4(bare)) return classifyIPv4(ipv4ToInt(bare));
	const groups = parseIPv6(bare);
	return groups ? classifyIPv6(groups) : "invalid";
}

// ---- URLs and destinations --------------------------------------------------------------------

/** An absolute http(s) URL, or DestinationError("invalid"). */
export function parseDestination(raw: string): URL {
	let url: URL;
	try {
		url = new URL(raw);
	} catch {
		throw new DestinationError("must be an absolute http or https URL", "invalid");
	}
	if (url.protocol !== "http:" && url.protocol !== "https:") throw new DestinationError("must be an absolute http or https URL", "invalid");
	if (!url.hostname) throw new DestinationError("must name a host", "invalid");
	// Nothing listens on port 0: every delivery would fail.
	if (url.port === "0") throw new DestinationError("must name a port from 1 to 65535", "invalid");
	return url;
}

/**
 * `raw` without the credentials it may carry (`https://user:pass@host/…` → `https://host/…`), for
 * everything that shows or records a destination beyond the endpoint itself: alerts, emails,
 * audit records, logs. The stored URL keeps them; the request sends them (Basic authentication).
 */
export function displayUrl(raw: string): string {
	try {
		const url = new URL(raw);
		if (!url.username && !url.password) return raw;
		url.username = "";
		url.password = "";
		return url.toString();
	} catch {
		// Not a URL: whatever sits before an "@" may be credentials.
		return raw.replace(/^([a-z][a-z0-9+.-]*:\/*)[^/?#]*@/i, "$1");
	}
}

/** `localhost` and every name under it are loopback whatever a resolver answers (RFC 6761 §6.3); a trailing dot is the same name. */
function isLocalhostName(host: string): boolean {
	const name = host.toLowerCase().replace(/\.$/, "");
	return name === "localhost" || name.endsWith(".localhost");
}

export interface DestinationOptions {
	/** Private destinations allowed (tests, local development): resolve only, refuse nothing. */
	allowPrivate: boolean;
	resolve: Resolve;
	/** A resolver that does not answer within this is treated as "no address". */
	timeoutMs: number;
}

/**
 * The addresses to connect to for `url`: an IP literal as it is (the URL parser already turned
 * forms like `0x7f.1` or `2130706433` into dotted quads), a name resolved. Unless private
 * destinations are allowed, refuses (DestinationError "refused") when ANY address is not public,
 * so a name with one public and one private address cannot be steered to the private one.
 */
export async function resolveDestination(url: URL, options: DestinationOptions): Promise<ResolvedAddress[]> {
	const host = url.hostname.replace(/^\[|\]$/g, "");
	const family = net.isIP(host);
	let addresses: ResolvedAddress[];
	if (family !== 0) {
		addresses = [{ address: host, family: family === 6 ? 6 : 4 }];
	} else if (!options.allowPrivate && isLocalhostName(host)) {
		// Refused before any lookup: a resolver that does not know the name (a trailing dot, a
		// subdomain) would let it pass creation as "unresolved", one that does would answer loopback.
		throw new DestinationError("must not resolve to a loopback address", "refused");
	} else {
		let timer: NodeJS.Timeout | undefined;
		const timeout = new Promise<never>((_, reject) => {
			timer = setTimeout(() => reject(new Error(`no answer within ${options.timeoutMs} ms`)), options.timeoutMs);
		});
		try {
			addresses = await Promise.race([options.resolve(host), timeout]);
		} catch (err) {
			throw new DestinationError(`${host} does not resolve (${err instanceof Error ? err.message : String(err)})`, "unresolved");
		} finally {
			clearTimeout(timer);
		}
		if (addresses.length === 0) throw new DestinationError(`${host} does not resolve`, "unresolved");
	}
	if (!options.allowPrivate) {
		for (const { address } of addresses) {
			const reason = classifyAddress(address);
			if (reason) throw new DestinationError(`must not ${family !== 0 ? "be" : "resolve to"} ${/^[aeiou]/.test(reason) ? "an" : "a"} ${reason} address`, "refused");
		}
	}
	return addresses;
}

/**
 * A `lookup` for http.request / net.connect that answers the addresses already checked, so the
 * socket connects to exactly those and the name is never resolved again. Handles both call
 * forms: `all: true` (Node's happy-eyeballs connect) and a single address.
 */
export function pinnedLookup(addresses: ResolvedAddress[]): LookupFunction {
	return ((_hostname: string, options: dns.LookupOptions, callback: (...args: unknown[]) => void) => {
		const wanted = options.family === 4 || options.family === 6 ? addresses.filter(a => a.family === options.family) : addresses;
		const list = wanted.length > 0 ? wanted : addresses;
		if (options.all) callback(null, list.map(a => ({ address: a.address, family: a.family })));
		else callback(null, list[0].address, list[0].family);
	}) as LookupFunction;
}

/**
 * A `lookup` that checks as it resolves: for clients that take request options but no async
 * step before connecting (openid-client's `http_options` hook). The socket connects to exactly
 * the addresses checked. IP literals never reach a lookup: `assertPublicLiteral` covers them.
 */
export function guardedLookup(options: DestinationOptions): LookupFunction {
	return ((hostname: string, lookupOptions: dns.LookupOptions, callback: (...args: unknown[]) => void) => {
		resolveDestination(new URL(`http://${hostname.includes(":") ? `[${hostname}]` : hostname}/`), options).then(
			addresses => pinnedLookup(addresses)(hostname, lookupOptions, callback as never),
			(err: unknown) => callback(err)
		);
	}) as LookupFunction;
}

/** Throws DestinationError("refused") for a URL whose host is a non-public IP literal (unless private destinations are allowed). */
export function assertPublicLiteral(url: URL, allowPrivate: boolean): void {
	const host = url.hostname.replace(/^\[|\]$/g, "");
	if (allowPrivate || net.isIP(host) === 0) return;
	const reason = classifyAddress(host);
	if (reason) throw new DestinationError(`must not be ${/^[aeiou]/.test(reason) ? "an" : "a"} ${reason} address`, "refused");
}
