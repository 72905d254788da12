/**
 * The email outbox (services/notifications/outbox.ts) over a real collection (NeDB in memory) and
 * a scripted mail transport: one email per request id, 422 for unusable requests, retries on the
 * configured schedule, a permanent refusal or a used-up schedule ends "failed" with the reason,
 * the tenant's log, tenant removal, two workers never sending one email twice, and a stalled
 * worker's email taken over once its lease runs out. The clock is the outbox's own (injected).
 */
import type { Service, ServiceSchema } from "moleculer";
import { DbMixin, type DbVars } from "../../mixins/db.mixin";
import type { EmailRequest } from "../../shared/contracts";
import { AppError } from "../../shared/errors";
import { COLLECTIONS } from "../../services/notifications/documents";
import type { Mailer, OutgoingMail, SentMail } from "../../services/notifications/mailer";
import { EmailOutbox, failureReason, isPermanentFailure, MAX_ATTACHMENT_BYTES } from "../../services/notifications/outbox";
import { globalQueueStore } from "../../services/notifications/queue";
import { startBroker, type TestBroker } from "../helpers/platform";

const OUTBOX = { email_outbox: COLLECTIONS.email_outbox };
type Db = DbVars<typeof OUTBOX>["db"];
const Holder: ServiceSchema = { name: "outbox-holder", mixins: [DbMixin(OUTBOX)] };

const T0 = Date.parse("2026-11-22T10:00:00.000Z");
const iso = (ms: number) => new Date(ms).toISOString();

/** An SMTP error as nodemailer shapes it. */
function smtpError(code: string, response?: string, command = "RCPT TO"): Error {
	const err = new Error(response ? `Can't send mail: ${response}` : `connect ECONNREFUSED 127.0.0.1:2525`);
	const responseCode = response ? Number(response.slice(0, 3)) : undefined;
	return Object.assign(err, { code, command, ...(response ? { response, responseCode } : {}) });
}

/** A transport that fails with the queued errors first, then takes mail; `hold()` makes sends wait for `release()`. */
class ScriptedMailer implements Mailer {
	readonly kind = "smtp";
	readonly description = "SMTP mail.example.com:587";
	readonly sent: OutgoingMail[] = [];
	readonly failures: unknown[] = [];
	private gate: Promise<void> | null = null;
	private open: () => void = () => undefined;

	/** `delayMs`: each send takes this long (a real server's round trips), so workers overlap. */
	constructor(private readonly delayMs = 0) {}

	async send(mail: OutgoingMail): Promise<SentMail> {
		if (this.gate) await this.gate;
		if (this.delayMs) await new Promise(resolve => setTimeout(resolve, this.delayMs));
		const failure = this.failures.shift();
		if (failure) throw failure;
		this.sent.push(mail);
		return { messageId: `<${this.sent.length}@mail.example.com>` };
	}

	hold(): void {
		this.gate = new Promise(resolve => (this.open = resolve));
	}

	release(): void {
		this.gate = null;
		this.open();
	}

	close(): void {}
}

type VerifyRequest = Extract<EmailRequest, { template: "verify" }>;

function verifyRequest(id: string, tenantId: string | null = "t-1", to = "ada@example.com"): VerifyRequest {
	return { id, tenantId, to, template: "verify", data: { name: "Ada", url: `https://cms.example.com/verify-email?token=secret-${id}` } };
}

type ReportRequest = Extract<EmailRequest, { template: "playbackReport" }>;

/** The tenant's data: its content names and play counts, which must never reach a log line. */
const CSV = 'contentId,contentName,plays\r\nc-1,"Café ""Zürich"" 📺",12\r\nc-2,CSV-SECRET-ROW,3\r\n';

function reportRequest(id: string, attachments: unknown = [{ filename: "proof-of-play-2026-11-23.csv", contentType: "text/csv", content: CSV }]): ReportRequest {
	return {
		id,
		tenantId: "t-1",
		to: "ops@example.com",
		template: "playbackReport",
		data: {
			tenantName: "Acme Cinemas",
			reportName: "Lobby screens",
			period: "23 Nov – 29 Nov 2026",
			plays: 15,
			durationMs: 900_000,
			rows: [{ name: "Café", plays: 12, durationMs: 720_000 }],
			url: "https://cms.example.com/analytics"
		},
		attachments
	} as ReportRequest;
}

describe("EmailOutbox", () => {
	let started: TestBroker;
	let db: Db;
	let clock = T0;
	const logLines: string[] = [];
	const logger = {
		info: (...args: unknown[]) => void logLines.push(`info ${args.map(String).join(" ")}`),
		warn: (...args: unknown[]) => void logLines.push(`warn ${args.map(String).join(" ")}`),
		error: (...args: unknown[]) => void logLines.push(`error ${args.map(String).join(" ")}`)
	};

	beforeAll(async () => {
		started = await startBroker([Holder], { EMAIL_RETRY_SCHEDULE: "1s,5s,30s", NOTIFICATIONS_LEASE_MS: "10000", NOTIFICATIONS_POLL_MS: "1000" });
		db = (started.broker.getLocalService("outbox-holder") as Service & DbVars<typeof OUTBOX>).db;
	});
	afterAll(async () => {
		// Every log line of every test: addresses and reasons, never a link or its token.
		expect(logLines.join("\n")).not.toMatch(/token|https?:\/\//);
		await started.stop();
	});
	beforeEach(async () => {
		await db.email_outbox.removeDocs({});
		clock = T0;
	});

	function outbox(mailer: Mailer | null, owner = "node-1:a"): EmailOutbox {
		return new EmailOutbox({ emails: db.email_outbox, config: started.config, owner, mailer: () => mailer, logger, now: () => clock });
	}

	async function only(requestId: string) {
		const docs = await db.email_outbox.findDocs({ requestId });
		expect(docs).toHaveLength(1);
		return docs[0];
	}

	it("stores a request queued and due now, then sends it once: sent, when, message id", async () => {
		const mailer = new ScriptedMailer();
		const box = outbox(mailer);
		await box.enqueue(verifyRequest("r-1"));
		expect(await only("r-1")).toMatchObject({
			tenant: "t-1",
			to: "ada@example.com",
			template: "verify",
			status: "queued",
			attempts: 0,
			nextAttemptAt: iso(T0),
			leaseOwner: null,
			leaseUntil: null,
			lastError: null,
			sentAt: null,
			messageId: null
		});

		clock = T0 + 250;
		expect(await box.tick()).toBe(1);
		expect(mailer.sent).toHaveLength(1);
		expect(mailer.sent[0]).toMatchObject({ to: "ada@example.com", template: "verify", subject: "Verify your email address for Marquee" });
		expect(mailer.sent[0].text).toContain("https://cms.example.com/verify-email?token=secret-r-1");
		expect(await only("r-1")).toMatchObject({
			status: "sent",
			attempts: 1,
			sentAt: iso(T0 + 250),
			messageId: "<1@mail.example.com>",
			nextAttemptAt: null,
			leaseOwner: null,
			leaseUntil: null,
			lastError: null
		});
		expect(await box.tick()).toBe(0);
		expect(mailer.sent).toHaveLength(1);
	});

	it("a replayed request id is one email, before and after it was sent", async () => {
		const mailer = new ScriptedMailer();
		const box = outbox(mailer);
		await box.enqueue(verifyRequest("r-2"));
		await box.enqueue(verifyRequest("r-2"));
		await Promise.all([box.enqueue(verifyRequest("r-2")), box.enqueue(verifyRequest("r-2"))]);
		expect(await db.email_outbox.countDocs({ requestId: "r-2" })).toBe(1);
		await box.tick();
		await box.enqueue(verifyRequest("r-2"));
		await box.tick();
		expect(mailer.sent).toHaveLength(1);
		expect(await only("r-2")).toMatchObject({ status: "sent", attempts: 1 });
	});

	it("refuses an unusable request with 422 naming the fields, and stores nothing", async () => {
		const box = outbox(new ScriptedMailer());
		const cases: Array<[Record<string, unknown>, string[]]> = [
			[{ to: "not-an-email" }, ["to"]],
			[{ to: "a@example.com,eve@evil.example" }, ["to"]],
			[{ to: "Ada <ada@example.com>" }, ["to"]],
			[{ to: "ada@example.com\r\nBcc: eve@evil.example" }, ["to"]],
			[{ id: "" }, ["id"]],
			[{ id: undefined, tenantId: 7 }, ["id", "tenantId"]],
			[{ template: "welcome" }, ["template"]],
			[{ data: null }, ["data"]],
			[{ data: { name: "Ada" } }, ["data.url"]],
			[{ data: { name: "Ada", url: "javascript:alert('secret-token')" } }, ["data.url"]]
		];
		for (const [change, fields] of cases) {
			const err = await box.enqueue({ ...verifyRequest("bad"), ...change } as EmailRequest).catch((e: unknown) => e);
			expect(err).toBeInstanceOf(AppError);
			expect(err).toMatchObject({ type: "VALIDATION_ERROR", code: 422 });
			expect(((err as AppError).data as Array<{ field: string }>).map(f => f.field).sort()).toEqual(fields);
			expect(JSON.stringify((err as AppError).data)).not.toContain("secret-token");
		}
		expect(await db.email_outbox.countDocs({})).toBe(0);
	});

	it("stores the template's data checked and cleaned (unknown fields dropped)", async () => {
		const box = outbox(new ScriptedMailer());
		await box.enqueue({ ...verifyRequest("r-clean"), data: { name: " Ada\r\n ", url: "https://cms.example.com/v?token=x", bcc: "eve@evil.example" } } as EmailRequest);
		expect((await only("r-clean")).data).toEqual({ name: "Ada", url: "https://cms.example.com/v?token=x" });
	});

	it("stores attachments with the email (only name, type and content) and hands the same ones to the transport at every attempt", async () => {
		const mailer = new ScriptedMailer();
		mailer.failures.push(smtpError("ECONNECTION"));
		const box = outbox(mailer);
		logLines.length = 0;
		// nodemailer reads a `path` (a local file) or an `href` (a URL) of an attachment: both are dropped
		await box.enqueue(
			reportRequest("a-1", [
				{ filename: "proof-of-play-2026-11-23.csv", contentType: "Text/CSV", content: CSV, path: "/etc/passwd", href: "http://169.254.169.254/", encoding: "base64" },
				{ filename: "📊".repeat(100), contentType: "application/vnd.ms-excel", content: "" }
			])
		);
		const expected = [
			{ filename: "proof-of-play-2026-11-23.csv", contentType: "text/csv", content: CSV },
			{ filename: "📊".repeat(100), contentType: "application/vnd.ms-excel", content: "" }
		];
		expect((await only("a-1")).attachments).toEqual(expected);
		// a replay of the same request id is still one email
		await box.enqueue(reportRequest("a-1"));

		expect(await box.tick()).toBe(1);
		expect(mailer.sent).toHaveLength(0);
		clock = T0 + 1000;
		expect(await box.tick()).toBe(1);
		expect(mailer.sent).toHaveLength(1);
		expect(mailer.sent[0]).toMatchObject({ to: "ops@example.com", template: "playbackReport", subject: "Proof of play: Lobby screens (23 Nov – 29 Nov 2026)" });
		expect(mailer.sent[0].attachments).toEqual(expected);
		expect(await only("a-1")).toMatchObject({ status: "sent", attempts: 2 });
		expect(await db.email_outbox.countDocs({ requestId: "a-1" })).toBe(1);
		// the log names the email, never its files
		expect(logLines.join("\n")).not.toMatch(/CSV-SECRET-ROW|proof-of-play-2026|Café/);
		expect(logLines.some(line => line.startsWith('info Mail "playbackReport" to ops@example.com queued'))).toBe(true);
	});

	it("an email without attachments stores and sends none", async () => {
		const mailer = new ScriptedMailer();
		const box = outbox(mailer);
		await box.enqueue(verifyRequest("a-none"));
		await box.enqueue(reportRequest("a-empty", []));
		await box.enqueue(reportRequest("a-null", null));
		for (const id of ["a-none", "a-empty", "a-null"]) expect(await only(id)).not.toHaveProperty("attachments");
		await box.tick();
		expect(mailer.sent).toHaveLength(3);
		for (const mail of mailer.sent) expect(mail.attachments).toBeUndefined();
	});

	it("refuses unusable attachments with 422 naming them, without echoing them, storing nothing", async () => {
		const box = outbox(new ScriptedMailer());
		const csv = (change: Record<string, unknown>) => ({ filename: "report.csv", contentType: "text/csv", content: CSV, ...change });
		const MiB = 1024 * 1024;
		const cases: Array<[unknown, string[]]> = [
			// a folder in the name, either way round, or a name that is no file
			[[csv({ filename: "../../etc/passwd" })], ["attachments[0].filename"]],
			[[csv({ filename: "reports/week.csv" })], ["attachments[0].filename"]],
			[[csv({ filename: "C:\\Users\\ada\\week.csv" })], ["attachments[0].filename"]],
			[[csv({ filename: ".." })], ["attachments[0].filename"]],
			[[csv({ filename: "" })], ["attachments[0].filename"]],
			[[csv({ filename: "   " })], ["attachments[0].filename"]],
			[[csv({ filename: 42 })], ["attachments[0].filename"]],
			[[csv({ filename: "x".repeat(101) })], ["attachments[0].filename"]],
			[[csv({ filename: "📊".repeat(101) })], ["attachments[0].filename"]],
			// header injection, reversed text ("report‮vsc.exe" shows as "reportexe.csv")
			[[csv({ filename: "week.csv\r\nBcc: eve@evil.example" })], ["attachments[0].filename"]],
			[[csv({ filename: "week\u0000.csv" })], ["attachments[0].filename"]],
			[[csv({ filename: "report\u202evsc.exe" })], ["attachments[0].filename"]],
			// only a plain type/subtype of a file
			[[csv({ contentType: "text/csv; charset=utf-8" })], ["attachments[0].contentType"]],
			[[csv({ contentType: "text" })], ["attachments[0].contentType"]],
			[[csv({ contentType: "text/csv\r\nBcc: eve@evil.example" })], ["attachments[0].contentType"]],
			[[csv({ contentType: "message/rfc822" })], ["attachments[0].contentType"]],
			[[csv({ contentType: "multipart/mixed" })], ["attachments[0].contentType"]],
			[[csv({ contentType: undefined })], ["attachments[0].contentType"]],
			// text content only
			[[csv({ content: { type: "Buffer", data: [1, 2] } })], ["attachments[0].content"]],
			[[csv({ content: undefined })], ["attachments[0].content"]],
			// the list itself
			[[csv({}), csv({}), csv({}), csv({})], ["attachments"]],
			["report.csv", ["attachments"]],
			[{ filename: "report.csv" }, ["attachments"]],
			[[csv({}), null], ["attachments[1]"]],
			// 2 MiB in all, counted in UTF-8 bytes: 1 Mi "é" is 2 MiB, one more byte is too much
			[[csv({ content: "é".repeat(MiB) }), csv({ content: "x" })], ["attachments"]],
			[[csv({ content: "x".repeat(MiB + 1) }), csv({ content: "x".repeat(MiB) })], ["attachments"]],
			// every problem at once, beside the request's own
			[[csv({ filename: "/tmp/x.csv", contentType: "csv" }), csv({ content: 7 })], ["attachments[0].contentType", "attachments[0].filename", "attachments[1].content", "to"]]
		];
		for (const [attachments, fields] of cases) {
			const request = { ...reportRequest("a-bad", attachments), ...(fields.includes("to") ? { to: "not-an-email" } : {}) } as EmailRequest;
			const err = await box.enqueue(request).catch((e: unknown) => e);
			expect(err).toBeInstanceOf(AppError);
			expect(err).toMatchObject({ type: "VALIDATION_ERROR", code: 422 });
			expect(((err as AppError).data as Array<{ field: string }>).map(f => f.field).sort()).toEqual(fields);
			expect(JSON.stringify((err as AppError).data)).not.toMatch(/CSV-SECRET-ROW|etc\/passwd|evil|week/);
		}
		expect(await db.email_outbox.countDocs({})).toBe(0);

		// exactly 2 MiB is fine
		await box.enqueue(reportRequest("a-2mib", [csv({ content: "é".repeat(MiB / 2) }), csv({ content: "x".repeat(MiB) })]));
		expect((await only("a-2mib")).attachments?.map(a => Buffer.byteLength(a.content))).toEqual([MiB, MiB]);
		expect(MAX_ATTACHMENT_BYTES).toBe(2 * MiB);
	});

	it("retries on the schedule after a failure the server may get over, then sends", async () => {
		const mailer = new ScriptedMailer();
		mailer.failures.push(smtpError("ECONNECTION"), smtpError("EENVELOPE", "451 Try again later"));
		const box = outbox(mailer);
		await box.enqueue(verifyRequest("r-3"));

		expect(await box.tick()).toBe(1);
		expect(await only("r-3")).toMatchObject({
			status: "queued",
			attempts: 1,
			nextAttemptAt: iso(T0 + 1000),
			lastError: "Mail server error ECONNECTION: connect ECONNREFUSED 127.0.0.1:2525"
		});
		clock = T0 + 999;
		expect(await box.tick()).toBe(0);

		clock = T0 + 1000;
		expect(await box.tick()).toBe(1);
		expect(await only("r-3")).toMatchObject({
			status: "queued",
			attempts: 2,
			nextAttemptAt: iso(T0 + 6000),
			lastError: "The mail server refused the recipient: 451 Try again later"
		});

		clock = T0 + 6000;
		expect(await box.tick()).toBe(1);
		expect(await only("r-3")).toMatchObject({ status: "sent", attempts: 3, sentAt: iso(T0 + 6000), nextAttemptAt: null, lastError: null });
		expect(mailer.sent).toHaveLength(1);
	});

	it("fails for good once the schedule is used up, keeping the last reason", async () => {
		const mailer = new ScriptedMailer();
		mailer.failures.push(...[1, 2, 3, 4].map(() => smtpError("ETIMEDOUT")));
		const box = outbox(mailer);
		await box.enqueue(verifyRequest("r-4"));
		for (const at of [T0, T0 + 1000, T0 + 6000]) {
			clock = at;
			expect(await box.tick()).toBe(1);
			expect((await only("r-4")).status).toBe("queued");
		}
		clock = T0 + 36_000;
		logLines.length = 0;
		expect(await box.tick()).toBe(1);
		expect(await only("r-4")).toMatchObject({ status: "failed", attempts: 4, nextAttemptAt: null, lastError: expect.stringMatching(/^Mail server error ETIMEDOUT/) });
		expect(logLines).toEqual([expect.stringMatching(/^error Mail "verify" to ada@example\.com failed after 4 attempts \(SMTP mail\.example\.com:587\): Mail server error ETIMEDOUT/)]);
		clock = T0 + 10_000_000;
		expect(await box.tick()).toBe(0);
		expect(mailer.sent).toHaveLength(0);
	});

	it("a recipient or message the server refuses for good fails at once with the server's reason", async () => {
		const mailer = new ScriptedMailer();
		mailer.failures.push(smtpError("EENVELOPE", "550 5.1.1 No such user"), smtpError("EMESSAGE", "554 Message rejected as spam", "DATA"));
		const box = outbox(mailer);
		await box.enqueue(verifyRequest("r-5", "t-1", "nobody@example.com"));
		await box.tick();
		expect(await only("r-5")).toMatchObject({ status: "failed", attempts: 1, nextAttemptAt: null, lastError: "The mail server refused the recipient: 550 5.1.1 No such user" });
		await box.enqueue(verifyRequest("r-6"));
		await box.tick();
		expect(await only("r-6")).toMatchObject({ status: "failed", attempts: 1, lastError: "The mail server refused the message: 554 Message rejected as spam" });
	});

	it("tells permanent refusals from failures worth retrying", () => {
		expect(isPermanentFailure(smtpError("EENVELOPE", "550 No such user"))).toBe(true);
		expect(isPermanentFailure(smtpError("EENVELOPE", "553 Mailbox name not allowed"))).toBe(true);
		expect(isPermanentFailure(smtpError("EMESSAGE", "552 Message too big", "DATA"))).toBe(true);
		// refused by nodemailer before sending (no server reply): it would be refused again
		expect(isPermanentFailure(Object.assign(new Error("Invalid recipient"), { code: "EENVELOPE" }))).toBe(true);
		// greylisting, a full mailbox for now, a bad command sequence: try again
		expect(isPermanentFailure(smtpError("EENVELOPE", "450 Greylisted"))).toBe(false);
		expect(isPermanentFailure(smtpError("EENVELOPE", "421 Service not available"))).toBe(false);
		expect(isPermanentFailure(smtpError("EMESSAGE", "503 Bad sequence of commands", "DATA"))).toBe(false);
		// our credentials, the connection, TLS: not this email's fault
		expect(isPermanentFailure(smtpError("EAUTH", "535 Authentication failed", "AUTH PLAIN"))).toBe(false);
		expect(isPermanentFailure(smtpError("ECONNECTION"))).toBe(false);
		expect(isPermanentFailure(new Error("boom"))).toBe(false);
		expect(isPermanentFailure(null)).toBe(false);
	});

	it("a reason is one short line, without links", () => {
		expect(failureReason(smtpError("EENVELOPE", "550 No such user"))).toBe("The mail server refused the recipient: 550 No such user");
		expect(failureReason(smtpError("EENVELOPE", "553 Sender address rejected", "MAIL FROM"))).toBe("The mail server refused the sender: 553 Sender address rejected");
		expect(failureReason(new Error("bad thing at https://cms.example.com/verify-email?token=abc\r\nsecond line"))).toBe("Mail error: bad thing at [link] second line");
		expect(failureReason(smtpError("EMESSAGE", `554 ${"x".repeat(1000)}`, "DATA"))).toHaveLength(300);
	});

	it("a template whose stored data no longer renders fails without sending", async () => {
		const mailer = new ScriptedMailer();
		const box = outbox(mailer);
		await box.enqueue(verifyRequest("r-7"));
		await db.email_outbox.updateWhere({ requestId: "r-7" }, { data: { name: "Ada", url: "javascript:alert(1)" } });
		await box.tick();
		expect(await only("r-7")).toMatchObject({ status: "failed", attempts: 1, lastError: "The email's data no longer fits its template" });
		expect(mailer.sent).toHaveLength(0);
	});

	it("without a transport (starting or stopping) it looks again after a poll, spending no attempt", async () => {
		const box = outbox(null);
		await box.enqueue(verifyRequest("r-8"));
		await box.tick();
		expect(await only("r-8")).toMatchObject({ status: "queued", attempts: 0, nextAttemptAt: iso(T0 + 1000), leaseOwner: null });
	});

	it("the log: the tenant's emails newest first, paged, by status, without body or data", async () => {
		const mailer = new ScriptedMailer();
		mailer.failures.push(smtpError("EENVELOPE", "550 No such user"));
		const box = outbox(mailer);
		await box.enqueue(verifyRequest("l-1", "t-log", "refused@example.com"));
		await box.tick();
		await box.enqueue(verifyRequest("l-2", "t-log", "sent@example.com"));
		await box.tick();
		await box.enqueue(verifyRequest("l-3", "t-log", "queued@example.com"));
		await box.enqueue(verifyRequest("l-other", "t-other", "other@example.com"));
		await box.enqueue(verifyRequest("l-none", null, "nobody@example.com"));

		const log = await box.log("t-log", 1, 10);
		expect(log).toMatchObject({ total: 3, page: 1, pageSize: 10, totalPages: 1 });
		expect(log.rows.map(r => [r.to, r.status])).toEqual([
			["queued@example.com", "queued"],
			["sent@example.com", "sent"],
			["refused@example.com", "failed"]
		]);
		for (const row of log.rows) {
			expect(Object.keys(row).sort()).toEqual(["attempts", "createdAt", "id", "lastError", "nextAttemptAt", "sentAt", "status", "template", "to"]);
		}
		expect(log.rows[2]).toMatchObject({ template: "verify", attempts: 1, lastError: "The mail server refused the recipient: 550 No such user", nextAttemptAt: null, sentAt: null });
		expect(log.rows[1]).toMatchObject({ attempts: 1, lastError: null, sentAt: iso(T0) });
		expect(log.rows[0]).toMatchObject({ attempts: 0, nextAttemptAt: iso(T0), sentAt: null });
		expect(JSON.stringify(log)).not.toContain("token");

		expect((await box.log("t-log", 2, 2)).rows.map(r => r.to)).toEqual(["refused@example.com"]);
		expect((await box.log("t-log", 1, 10, "failed")).rows.map(r => r.to)).toEqual(["refused@example.com"]);
		expect((await box.log("t-log", 1, 10, "sent")).total).toBe(1);
		expect((await box.log("t-nobody", 1, 10)).total).toBe(0);
	});

	it("removing a tenant removes its emails only", async () => {
		const box = outbox(new ScriptedMailer());
		await box.enqueue(verifyRequest("x-1", "t-gone"));
		await box.enqueue(verifyRequest("x-2", "t-gone"));
		await box.enqueue(verifyRequest("x-3", "t-kept"));
		await box.enqueue(verifyRequest("x-4", null));
		await box.removeTenant("t-gone");
		expect((await db.email_outbox.findDocs({})).map(d => d.requestId).sort()).toEqual(["x-3", "x-4"]);
	});

	it("two running workers on one outbox collection never send one email twice", async () => {
		const config = { ...started.config, notifications: { ...started.config.notifications, pollMs: 10 } };
		const mailers = [new ScriptedMailer(5), new ScriptedMailer(5)];
		const [a, b] = mailers.map((mailer, i) => new EmailOutbox({ emails: db.email_outbox, config, owner: `node-${i}:x`, mailer: () => mailer, logger, now: () => clock }));
		a.start();
		b.start();
		try {
			// Each request wakes the worker it reached; both poll every 10 ms as well.
			await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).enqueue(verifyRequest(`race-${i}`, "t-race", `race-${i}@example.com`))));
			for (let i = 0; i < 500 && (await db.email_outbox.countDocs({ status: "sent" })) < 40; i++) await new Promise(resolve => setTimeout(resolve, 10));
		} finally {
			await Promise.all([a.stop(), b.stop()]);
		}
		const recipients = mailers.flatMap(m => m.sent).map(m => m.to).sort();
		expect(recipients).toEqual(Array.from({ length: 40 }, (_, i) => `race-${i}@example.com`).sort());
		expect(await db.email_outbox.countDocs({ status: "sent", attempts: 1 })).toBe(40);
	});

	it("a worker that read an email before another sent it cannot claim it again", async () => {
		const box = outbox(new ScriptedMailer());
		await box.enqueue(verifyRequest("r-stale"));
		const store = globalQueueStore(db.email_outbox);
		const [stale] = await store.due(iso(clock), 10);
		expect(await box.tick()).toBe(1);
		expect(await store.claim(stale, "node-b:late", iso(clock + 10_000))).toBe(false);
		expect(await only("r-stale")).toMatchObject({ status: "sent", leaseOwner: null });
	});

	it("a stalled worker's email is taken over once its lease runs out, and the stalled one's late outcome is not recorded", async () => {
		const stalled = new ScriptedMailer();
		const healthy = new ScriptedMailer();
		const a = outbox(stalled, "node-a:1");
		const b = outbox(healthy, "node-b:2");
		await a.enqueue(verifyRequest("r-9"));
		stalled.hold();
		const first = a.tick();
		// a holds the lease: b finds nothing due until it runs out (10 s)
		while ((await only("r-9")).leaseOwner !== "node-a:1") await new Promise(resolve => setImmediate(resolve));
		clock = T0 + 10_000;
		expect(await b.tick()).toBe(0);
		clock = T0 + 10_001;
		expect(await b.tick()).toBe(1);
		expect(await only("r-9")).toMatchObject({ status: "sent", attempts: 1, messageId: "<1@mail.example.com>" });

		logLines.length = 0;
		stalled.release();
		await first;
		expect(await only("r-9")).toMatchObject({ status: "sent", attempts: 1, messageId: "<1@mail.example.com>", leaseOwner: null });
		expect(logLines).toEqual([`warn Mail "verify" to ada@example.com: no longer this worker's (lease ran out, or removed) during the attempt; its outcome (sent) is not recorded`]);
	});
});
