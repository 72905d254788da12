/**
 * What the embedded key/value store (the in-process map of `npm start`) must not forget when the
 * process restarts: the throttles' counters (shared/throttle.ts). Without them a restart would
 * hand a password or second-factor guesser a fresh budget. With Redis nothing here is used:
 * Redis keeps them.
 *
 * Every change of a durable key is appended to a file as the key's resulting state — its value
 * and expiry, or its removal — before the operation answers. `appendFileSync` has handed the line
 * to the operating system when it returns, so a killed process (SIGKILL, a crash) keeps it; only
 * the machine itself going down could lose the last lines. Opening replays the file (the last line
 * of a key wins; expired entries and a torn line are dropped) and rewrites it compacted; the
 * store compacts again whenever the lines outgrow the live entries, and hourly when an entry has
 * expired (the keys name emails and addresses).
 *
 * One process owns a DATA_DIR (shared/data-dir-lock.ts), so one writer owns the file.
 */
import fs from "node:fs";
import path from "node:path";
import { Errors } from "./errors";

/** A value with its expiry (ms since the epoch; null: none). */
export interface JournalEntry {
	value: string;
	expiresAt: number | null;
}

/** Whether `entry` has expired by `now` (ms). */
export function expiredBy(entry: JournalEntry, now: number): boolean {
	return entry.expiresAt !== null && entry.expiresAt <= now;
}

/** Lines appended beyond the live entries before the file is rewritten. */
const COMPACT_SLACK = 10_000;
/** How often the file is rid of expired entries (they name sign-in addresses and emails). */
export const JOURNAL_SWEEP_MS = 3600_000;

export class KvJournal {
	private fd: number | null = null;
	/** Lines in the file, and the count past which it is rewritten. */
	private lines = 0;
	private rewriteAt = 0;
	/** The durable entries as the file says (the store changes none without recording it): what a rewrite writes. */
	private readonly durable = new Map<string, JournalEntry>();
	private now: () => number = Date.now;
	/** A failed append may have left part of its line: the next one starts on a line of its own. */
	private torn = false;
	private sweeper: NodeJS.Timeout | null = null;

	constructor(
		private readonly file: string,
		/** Whether a key's changes are kept across restarts. */
		readonly isDurable: (key: string) => boolean
	) {}

	/** The durable entries the file holds that are still live by `now`; the file is rewritten with just them. */
	open(now: () => number): ReadonlyMap<string, JournalEntry> {
		this.now = now;
		fs.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
		const text = fs.existsSync(this.file) ? fs.readFileSync(this.file, "utf8") : "";
		for (const line of text.split("\n")) {
			const parsed = parseLine(line);
			if (!parsed || !this.isDurable(parsed.key)) continue;
			if (parsed.entry) this.durable.set(parsed.key, parsed.entry);
			else this.durable.delete(parsed.key);
		}
		this.rewrite();
		this.sweeper = setInterval(() => this.sweep(), JOURNAL_SWEEP_MS).unref();
		return this.durable;
	}

	/**
	 * Rewrites the file when an entry in it has expired: a throttle's key names the email or the
	 * address it counts, which must not outlive its window on disk for want of a restart or of
	 * enough traffic to compact. Hourly; a failure waits for the next turn.
	 */
	sweep(): void {
		if (this.fd === null) return;
		const now = this.now();
		if (![...this.durable.values()].some(entry => expiredBy(entry, now))) return;
		try {
			this.rewrite();
		} catch {
			/* the disk refused: the next sweep, or the next append's rewrite, tries again */
		}
	}

	/**
	 * Appends a durable key's new state (undefined: removed), and rewrites the file once its lines
	 * have outgrown what it held at the last rewrite (amortised: a rewrite follows at least as
	 * many appends as it writes lines). A failed append answers 503: a throttle that cannot be
	 * kept must not let the attempt through uncounted. A failed rewrite loses nothing (the change
	 * is in the file already): the file grows until a later one succeeds.
	 */
	record(key: string, entry: JournalEntry | undefined): void {
		if (this.fd === null) return;
		try {
			const line = `${JSON.stringify(entry ? [key, entry.value, entry.expiresAt] : [key])}\n`;
			fs.appendFileSync(this.fd, this.torn ? `\n${line}` : line);
			this.torn = false;
		} catch {
			this.torn = true;
			throw Errors.unavailable("The platform could not record a limit on its disk, retry later");
		}
		if (entry) this.durable.set(key, { ...entry });
		else this.durable.delete(key);
		if (++this.lines <= this.rewriteAt) return;
		try {
			this.rewrite();
		} catch {
			this.rewriteAt = this.lines + COMPACT_SLACK;
		}
	}

	close(): void {
		if (this.sweeper) clearInterval(this.sweeper);
		this.sweeper = null;
		if (this.fd !== null) fs.closeSync(this.fd);
		this.fd = null;
	}

	/**
	 * Replaces the file with the live durable entries, atomically: they are written to a temporary
	 * file, opened for appending, which is then renamed over the journal — the descriptor written
	 * through is the one appended to afterwards, so nothing that can fail follows the rename (a
	 * reopen after it could fail and leave the old descriptor on a file no longer there).
	 */
	private rewrite(): void {
		const now = this.now();
		for (const [key, entry] of this.durable) if (expiredBy(entry, now)) this.durable.delete(key);
		const temporary = `${this.file}.${process.pid}.tmp`;
		const body = [...this.durable].map(([key, entry]) => `${JSON.stringify([key, entry.value, entry.expiresAt])}\n`).join("");
		const { O_WRONLY, O_CREAT, O_TRUNC, O_APPEND } = fs.constants;
		let fd: number | null = null;
		try {
			fd = fs.openSync(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o600);
			fs.writeFileSync(fd, body);
			fs.renameSync(temporary, this.file);
		} catch (err) {
			if (fd !== null) fs.closeSync(fd);
			fs.rmSync(temporary, { force: true });
			throw err;
		}
		// The new descriptor is the journal's before the old one closes: a close that fails (it
		// frees the number all the same) must not leave the journal on a closed or reused number.
		const old = this.fd;
		this.fd = fd;
		this.torn = false;
		this.lines = this.durable.size;
		this.rewriteAt = COMPACT_SLACK + 3 * this.durable.size;
		if (old === null) return;
		try {
			fs.closeSync(old);
		} catch {
			/* the descriptor is released whether or not close reports an error */
		}
	}
}

/** One line: `[key, value, expiresAt]` (set) or `[key]` (removed); null for anything else (a torn or foreign line). */
function parseLine(line: string): { key: string; entry: JournalEntry | null } | null {
	if (!line) return null;
	let parsed: unknown;
	try {
		parsed = JSON.parse(line);
	} catch {
		return null;
	}
	if (!Array.isArray(parsed) || typeof parsed[0] !== "string") return null;
	if (parsed.length === 1) return { key: parsed[0], entry: null };
	const [key, value, expiresAt] = parsed as unknown[];
	if (parsed.length !== 3 || typeof value !== "string" || !(expiresAt === null || (typeof expiresAt === "number" && Number.isFinite(expiresAt)))) return null;
	return { key: key as string, entry: { value, expiresAt } };
}
