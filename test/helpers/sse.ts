/**
 * A test client of the device live stream (server-sent events), reading it as a player does:
 * the long-lived response parsed into blocks as they arrive.
 */
import http from "node:http";
import { bearer } from "./accounts";

export const EVENTS = "/api/v1/device/events";

/** One SSE block: the fields of an event, or comments only. */
export interface Block {
	event?: string;
	data?: string;
	id?: string;
	retry?: string;
	comments: string[];
	raw: string;
}

function parseBlock(raw: string): Block {
	const block: Block = { comments: [], raw };
	for (const line of raw.split("\n")) {
		if (line.startsWith(":")) block.comments.push(line.slice(1).trim());
		else {
			const colon = line.indexOf(":");
			const field = colon < 0 ? line : line.slice(0, colon);
			const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
			if (field === "event" || field === "data" || field === "id" || field === "retry") block[field] = value;
		}
	}
	return block;
}

export interface Stream {
	status: number;
	headers: http.IncomingHttpHeaders;
	/** Every block received so far. */
	blocks: Block[];
	/** The response body when the answer was not a stream (JSON errors). */
	body(): Promise<string>;
	/** The first block from index `from` on that matches, waiting up to `timeoutMs`. */
	waitFor(match: (block: Block) => boolean, timeoutMs?: number, from?: number): Promise<Block>;
	/** Resolves once the server ended the response. */
	ended: Promise<void>;
	isEnded(): boolean;
	close(): void;
}

/** Streams opened by `connect`, for cleanup (`closeStreams`). */
export const open: Stream[] = [];

/** GET the stream with `token`; resolves once the status line and headers arrived. */
export function connect(baseUrl: string, token: string | null, headers: Record<string, string> = {}): Promise<Stream> {
	return new Promise((resolve, reject) => {
		const req = http.get(`${baseUrl}${EVENTS}`, { headers: { ...(token ? bearer(token) : {}), ...headers } }, res => {
			res.setEncoding("utf8");
			const blocks: Block[] = [];
			let buffer = "";
			let raw = "";
			let ended = false;
			const waiters = new Set<() => void>();
			const notify = () => waiters.forEach(w => w());
			res.on("data", (chunk: string) => {
				raw += chunk;
				buffer += chunk;
				let end: number;
				while ((end = buffer.indexOf("\n\n")) >= 0) {
					blocks.push(parseBlock(buffer.slice(0, end)));
					buffer = buffer.slice(end + 2);
				}
				notify();
			});
			const ended$ = new Promise<void>(done => {
				const finish = () => {
					ended = true;
					notify();
					done();
				};
				res.on("end", finish);
				res.on("close", finish);
				res.on("error", finish);
			});
			const stream: Stream = {
				status: res.statusCode ?? 0,
				headers: res.headers,
				blocks,
				body: async () => {
					await ended$;
					return raw;
				},
				waitFor(match, timeoutMs = 3000, from = 0) {
					return new Promise((found, fail) => {
						const check = () => {
							const block = blocks.slice(from).find(match);
							if (block) return done(() => found(block));
							if (ended) return done(() => fail(new Error(`stream ended without a matching block; got ${JSON.stringify(blocks.map(b => b.raw))}`)));
						};
						const timer = setTimeout(() => done(() => fail(new Error(`no matching block within ${timeoutMs} ms; got ${JSON.stringify(blocks.map(b => b.raw))}`))), timeoutMs);
						const done = (fn: () => void) => {
							clearTimeout(timer);
							waiters.delete(check);
							fn();
						};
						waiters.add(check);
						check();
					});
				},
				ended: ended$,
				isEnded: () => ended,
				close: () => req.destroy()
			};
			open.push(stream);
			resolve(stream);
		});
		req.on("error", reject);
	});
}

export const isEvent = (name: string) => (block: Block) => block.event === name;

export function closeStreams(): void {
	for (const stream of open.splice(0)) stream.close();
}
