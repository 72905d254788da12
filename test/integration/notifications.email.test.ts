/**
 * Email end to end through the durable outbox: a message on the `notifications.email` channel is
 * stored, then sent over SMTP to a real in-test server (smtp-server) or written to DATA_DIR/mail
 * as an .eml file in the embedded mode. The mail server down for a while loses nothing; a
 * permanent refusal ends "failed" with the reason; a replayed request id is one email; two
 * workers never send one email twice; the tenant's email log shows it all. Where a test drives
 * the outbox itself, its clock is injected and the worker is run with tick(): no sleeping on
 * retry schedules.
 */
import fs from "node:fs";
import path from "node:path";
import type { Service, ServiceBroker, ServiceSchema } from "moleculer";
import { simpleParser, type AddressObject, type ParsedMail } from "mailparser";
import { SMTPServer } from "smtp-server";
import { DbMixin, type DbVars } from "../../mixins/db.mixin";
import NotificationsService from "../../services/notifications.service";
import { COLLECTIONS, type EmailDoc } from "../../services/notifications/documents";
import { createMailer, type Mailer } from "../../services/notifications/mailer";
import { EmailOutbox } from "../../services/notifications/outbox";
import { EMAIL_CHANNEL } from "../../shared/channels";
import { sendToChannel, type EmailLogPage, type EmailRequest, type EmailTemplate } from "../../shared/contracts";
import { freePort } from "../helpers/servers";
import { request, startBroker, startGateway, tempDir, type TestBroker, type TestGateway } from "../helpers/platform";
import { ProbeService } from "../helpers/stub-services";

const FROM = "signage@example.com";
const EXPIRES_AT = "2026-12-01T09:30:00.000Z";
const T0 = Date.parse("2026-11-22T10:00:00.000Z");

let ids = 0;
/** A fresh request id per message, as callers mint them. */
function requestId(label: string): string {
	ids += 1;
	return `${label}-${process.pid}-${ids}`;
}

/** One message per template with a link, each link with its own secret token. */
function messages(tenantId: string | null): EmailRequest[] {
	return [
		{ id: requestId("verify"), tenantId, to: "ada@example.com", template: "verify", data: { name: "Ada", url: "https://cms.example.com/verify?token=verify-secret-1" } },
		{
			id: requestId("reset"),
			tenantId,
			to: "bob@example.com",
			template: "reset",
			data: { name: "Bob", url: "https://cms.example.com/reset?token=reset-secret-2", expiresInMinutes: 30 }
		},
		{
			id: requestId("invitation"),
			tenantId,
			to: "cy@example.com",
			template: "invitation",
			data: {
				inviterName: "Grace",
				tenantName: "Acme Cinemas",
				role: "admin",
				url: "https://cms.example.com/invitations/accept?token=invite-secret-3",
				expiresAt: EXPIRES_AT
			}
		}
	];
}

const SUBJECTS: Partial<Record<EmailTemplate, string>> = {
	verify: "Verify your email address for Marquee",
	reset: "Reset your Marquee password",
	invitation: "You are invited to join an organisation on Marquee"
};

function linkOf(message: EmailRequest): string {
	return (message.data as { url: string }).url;
}

type VerifyRequest = Extract<EmailRequest, { template: "verify" }>;

function verifyTo(to: string, tenantId: string | null = "t-smtp"): VerifyRequest {
	return { id: requestId("v"), tenantId, to, template: "verify", data: { name: "Someone", url: `https://cms.example.com/verify?token=tok-${ids}` } };
}

function addresses(value: AddressObject | AddressObject[] | undefined): string[] {
	const list = value === undefined ? [] : Array.isArray(value) ? value : [value];
	return list.flatMap(a => a.value.map(v => v.address ?? ""));
}

/** The message came out with its recipient, sender, subject and link in both parts. */
function expectMessage(mail: ParsedMail, message: EmailRequest, from: string): void {
	expect(addresses(mail.to)).toEqual([message.to]);
	expect(addresses(mail.from)).toEqual([from]);
	expect(mail.subject).toBe(SUBJECTS[message.template]);
	expect(mail.text).toContain(linkOf(message));
	expect(typeof mail.html).toBe("string");
	expect(mail.html as string).toContain(`href="${linkOf(message)}"`);
}

/** Polls `check` until it answers true; fails naming `what` after a generous while (never a timing assertion). */
async function waitFor(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
	for (let i = 0; i < 1000; i++) {
		if (await check()) return;
		await new Promise(resolve => setTimeout(resolve, 10));
	}
	throw new Error(`timed out waiting for ${what}`);
}

interface Received {
	envelopeFrom: string;
	envelopeTo: string[];
	mail: ParsedMail;
}

/** A real SMTP server on a fixed port that can be stopped and started again; refuses refused@example.com (550). */
class TestSmtp {
	readonly received: Received[] = [];
	private server: SMTPServer | null = null;

	constructor(readonly port: number) {}

	async start(): Promise<void> {
		const server = new SMTPServer({
			authOptional: true,
			allowInsecureAuth: true,
			disabledCommands: ["STARTTLS"],
			logger: false,
			// Idle pooled client connections are told 421 and closed at once, not after 30 s.
			closeTimeout: 50,
			onRcptTo(address, _session, callback) {
				callback(address.address === "refused@example.com" ? Object.assign(new Error("No such user"), { responseCode: 550 }) : null);
			},
			onData: (stream, session, callback) => {
				simpleParser(stream).then(
					mail => {
						this.received.push({
							envelopeFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
							envelopeTo: session.envelope.rcptTo.map(r => r.address),
							mail
						});
						callback();
					},
					(err: Error) => callback(err)
				);
			}
		});
		await new Promise<void>((resolve, reject) => {
			server.once("error", reject);
			server.listen(this.port, "127.0.0.1", () => resolve());
		});
		this.server = server;
	}

	async stop(): Promise<void> {
		const server = this.server;
		this.server = null;
		if (server) await new Promise<void>(resolve => server.close(() => resolve()));
	}

	to(address: string): Received[] {
		return this.received.filter(r => r.envelopeTo.includes(address));
	}
}

type NotificationsInstance = Service & DbVars<typeof COLLECTIONS> & { outbox: EmailOutbox };

function notificationsOf(broker: ServiceBroker): NotificationsInstance {
	return broker.getLocalService("notifications") as NotificationsInstance;
}

/** The email log as an admin of `tenantId` reads it (GET /notifications/emails). */
function emailLog(broker: ServiceBroker, tenantId: string, params: Record<string, unknown> = {}): Promise<EmailLogPage> {
	return broker.call("notifications.emails", { page: 1, pageSize: 50, ...params }, { meta: { auth: { kind: "user", tenantId, userId: "u-admin", role: "admin" } } });
}

describe("email through the outbox, sent by the notifications service over SMTP", () => {
	let smtp: TestSmtp;
	let tb: TestBroker;

	beforeAll(async () => {
		smtp = new TestSmtp(await freePort());
		await smtp.start();
		tb = await startBroker([NotificationsService], {
			SMTP_URL: `smtp://127.0.0.1:${smtp.port}`,
			MAIL_FROM: `Marquee Signage <${FROM}>`,
			EMAIL_RETRY_SCHEDULE: Array(20).fill("50ms").join(","),
			NOTIFICATIONS_POLL_MS: "50"
		});
	});

	afterAll(async () => {
		await tb?.stop();
		await smtp?.stop();
	});

	it("delivers each template sent on the channel once, and the log shows it sent with its message id", async () => {
		const sent = messages("t-smtp");
		for (const message of sent) await sendToChannel(tb.broker, EMAIL_CHANNEL, message);
		const emails = notificationsOf(tb.broker).db.email_outbox;
		await waitFor("three emails sent", async () => (await emails.countDocs({ requestId: { $in: sent.map(m => m.id) }, status: "sent" })) === 3);
		for (const message of sent) {
			const got = smtp.to(message.to);
			expect(got).toHaveLength(1);
			expect(got[0].envelopeFrom).toBe(FROM);
			expect(got[0].envelopeTo).toEqual([message.to]);
			expectMessage(got[0].mail, message, FROM);
			expect((got[0].mail.from as AddressObject).value[0].name).toBe("Marquee Signage");
			const doc = (await emails.findDoc({ requestId: message.id })) as EmailDoc;
			expect(doc).toMatchObject({ status: "sent", attempts: 1, tenant: "t-smtp", nextAttemptAt: null, lastError: null });
			expect(got[0].mail.messageId).toBe(doc.messageId);
		}
		const invitation = smtp.to("cy@example.com")[0].mail;
		expect(invitation.text).toContain("as an admin");
		expect(invitation.text).toContain("1 December 2026 at 09:30 UTC");

		const log = await emailLog(tb.broker, "t-smtp");
		expect(log.rows.map(r => [r.to, r.template, r.status])).toEqual([
			["cy@example.com", "invitation", "sent"],
			["bob@example.com", "reset", "sent"],
			["ada@example.com", "verify", "sent"]
		]);
		expect(JSON.stringify(log)).not.toContain("secret");
	});

	it("a redelivered channel message is still one email", async () => {
		const message = verifyTo("twice@example.com");
		await sendToChannel(tb.broker, EMAIL_CHANNEL, message);
		await waitFor("the first delivery", async () => (await notificationsOf(tb.broker).db.email_outbox.countDocs({ requestId: message.id, status: "sent" })) === 1);
		// the channel's handler, as a redelivery after a crash runs it
		await notificationsOf(tb.broker).outbox.enqueue(message);
		await notificationsOf(tb.broker).outbox.tick();
		expect(smtp.to("twice@example.com")).toHaveLength(1);
		expect(await notificationsOf(tb.broker).db.email_outbox.countDocs({ requestId: message.id })).toBe(1);
	});

	it("fields beyond the message's own add no recipient or header", async () => {
		const message = verifyTo("only@example.com");
		await sendToChannel(tb.broker, EMAIL_CHANNEL, { ...message, cc: "eve@evil.example", bcc: "eve@evil.example", from: "ceo@example.com" } as EmailRequest);
		await waitFor("the email", () => smtp.to("only@example.com").length === 1);
		const got = smtp.to("only@example.com")[0];
		expect(got.envelopeTo).toEqual(["only@example.com"]);
		expect(got.envelopeFrom).toBe(FROM);
		expect(got.mail.cc).toBeUndefined();
		expect(smtp.to("eve@evil.example")).toEqual([]);
	});

	it("the mail server down for a while loses nothing: each email queued meanwhile is sent once it is back", async () => {
		await smtp.stop();
		const queued = ["down-1@example.com", "down-2@example.com", "down-3@example.com"].map(to => verifyTo(to, "t-down"));
		for (const message of queued) await sendToChannel(tb.broker, EMAIL_CHANNEL, message);
		// every email has been tried and refused by the closed port, and waits for its retry
		await waitFor("failed attempts", async () => {
			const log = await emailLog(tb.broker, "t-down");
			return log.total === 3 && log.rows.every(r => r.status === "queued" && r.attempts >= 2);
		});
		const waiting = await emailLog(tb.broker, "t-down");
		for (const row of waiting.rows) {
			expect(row.lastError).toMatch(/^Mail server error (ECONNECTION|ESOCKET)/);
			expect(row.nextAttemptAt).not.toBeNull();
		}

		await smtp.start();
		await waitFor("the queued emails", async () => (await emailLog(tb.broker, "t-down", { status: "sent" })).total === 3);
		for (const message of queued) {
			expect(smtp.to(message.to)).toHaveLength(1);
			expect(smtp.to(message.to)[0].mail.text).toContain(linkOf(message));
		}
	});

	it("a recipient the server refuses for good ends failed with the server's reason, shown in the log", async () => {
		const message = verifyTo("refused@example.com", "t-refused");
		await sendToChannel(tb.broker, EMAIL_CHANNEL, message);
		await waitFor("the refusal", async () => (await emailLog(tb.broker, "t-refused", { status: "failed" })).total === 1);
		const [row] = (await emailLog(tb.broker, "t-refused")).rows;
		expect(row).toMatchObject({ to: "refused@example.com", status: "failed", attempts: 1, nextAttemptAt: null, sentAt: null });
		expect(row.lastError).toBe("The mail server refused the recipient: 550 No such user");
		expect(smtp.to("refused@example.com")).toEqual([]);
	});
});

/** A service that holds only the outbox collection, so tests can run EmailOutbox instances over it themselves. */
const OUTBOX = { email_outbox: COLLECTIONS.email_outbox };
const OutboxHolder: ServiceSchema = { name: "outbox-holder", mixins: [DbMixin(OUTBOX)] };

describe("the outbox over SMTP, driven step by step", () => {
	let smtp: TestSmtp;
	let tb: TestBroker;
	let clock = T0;
	const mailers: Mailer[] = [];
	const logLines: string[] = [];
	const logger = {
		info: (...args: unknown[]) => void logLines.push(args.map(String).join(" ")),
		warn: (...args: unknown[]) => void logLines.push(args.map(String).join(" ")),
		error: (...args: unknown[]) => void logLines.push(args.map(String).join(" "))
	};

	beforeAll(async () => {
		smtp = new TestSmtp(await freePort());
		await smtp.start();
		tb = await startBroker([OutboxHolder], { EMAIL_RETRY_SCHEDULE: "50ms,50ms,50ms,50ms,50ms", NOTIFICATIONS_LEASE_MS: "10000" });
	});

	afterAll(async () => {
		for (const mailer of mailers) mailer.close();
		await tb?.stop();
		await smtp?.stop();
		expect(logLines.join("\n")).not.toMatch(/token|https?:\/\//);
	});

	beforeEach(async () => {
		await emails().removeDocs({});
		clock = T0;
	});

	function emails() {
		return (tb.broker.getLocalService("outbox-holder") as Service & DbVars<typeof OUTBOX>).db.email_outbox;
	}

	/** One worker (a replica) with its own pooled SMTP transport. */
	function outbox(owner: string): EmailOutbox {
		const mailer = createMailer({ smtpUrl: `smtp://127.0.0.1:${smtp.port}`, dataDir: tempDir(), from: FROM, timeoutMs: { connection: 2000, greeting: 2000, socket: 5000 } });
		mailers.push(mailer);
		return new EmailOutbox({ emails: emails(), config: tb.config, owner, mailer: () => mailer, logger, now: () => clock });
	}

	it("SMTP stopped, then started again on the same port: every email queued meanwhile is sent once", async () => {
		const box = outbox("node-1:a");
		await box.enqueue(verifyTo("before@example.com", "t-steps"));
		await box.tick();
		expect(smtp.to("before@example.com")).toHaveLength(1);

		await smtp.stop();
		const queued = [1, 2, 3, 4].map(n => verifyTo(`meanwhile-${n}@example.com`, "t-steps"));
		for (const message of queued) await box.enqueue(message);
		for (let round = 1; round <= 2; round++) {
			expect(await box.tick()).toBe(4);
			clock += 50;
		}
		const log = await box.log("t-steps", 1, 10, "queued");
		expect(log.rows.map(r => r.attempts)).toEqual([2, 2, 2, 2]);
		for (const row of log.rows) expect(row.lastError).toMatch(/^Mail server error (ECONNECTION|ESOCKET)/);

		await smtp.start();
		expect(await box.tick()).toBe(4);
		for (const message of queued) {
			expect(smtp.to(message.to)).toHaveLength(1);
			expect(smtp.to(message.to)[0].mail.text).toContain(linkOf(message));
		}
		expect((await box.log("t-steps", 1, 10)).rows.map(r => [r.to, r.status, r.attempts])).toEqual([
			["meanwhile-4@example.com", "sent", 3],
			["meanwhile-3@example.com", "sent", 3],
			["meanwhile-2@example.com", "sent", 3],
			["meanwhile-1@example.com", "sent", 3],
			["before@example.com", "sent", 1]
		]);
		clock += 1_000_000;
		expect(await box.tick()).toBe(0);
		expect(smtp.received.filter(r => /^(before|meanwhile)/.test(r.envelopeTo[0]))).toHaveLength(5);
	});

	it("down longer than the schedule: failed with the reason, nothing sent later", async () => {
		const box = outbox("node-1:b");
		await smtp.stop();
		try {
			await box.enqueue(verifyTo("too-long@example.com", "t-long"));
			for (let attempt = 1; attempt <= 6; attempt++) {
				expect(await box.tick()).toBe(1);
				clock += 50;
			}
			const [row] = (await box.log("t-long", 1, 10)).rows;
			expect(row).toMatchObject({ status: "failed", attempts: 6, nextAttemptAt: null });
			expect(row.lastError).toMatch(/^Mail server error (ECONNECTION|ESOCKET)/);
		} finally {
			await smtp.start();
		}
		clock += 1_000_000;
		expect(await box.tick()).toBe(0);
		expect(smtp.to("too-long@example.com")).toEqual([]);
	});

	it("a replayed request id is one email", async () => {
		const box = outbox("node-1:c");
		const message = verifyTo("replayed@example.com");
		await box.enqueue(message);
		await box.enqueue(message);
		await box.tick();
		await box.enqueue(message);
		await box.tick();
		expect(smtp.to("replayed@example.com")).toHaveLength(1);
	});

	it("two workers racing over one outbox never send one email twice", async () => {
		const a = outbox("node-a:1");
		const b = outbox("node-b:2");
		const recipients = Array.from({ length: 30 }, (_, i) => `raced-${i}@example.com`);
		await Promise.all(recipients.map((to, i) => (i % 2 ? a : b).enqueue(verifyTo(to, "t-race"))));
		for (let round = 0; round < 20 && (await emails().countDocs({ status: "queued" })) > 0; round++) {
			await Promise.all([a.tick(), b.tick(), b.tick(), a.tick()]);
		}
		for (const to of recipients) expect(smtp.to(to)).toHaveLength(1);
		expect(await emails().countDocs({ tenant: "t-race", status: "sent", attempts: 1 })).toBe(30);
	});

	it("the log shows queued, sent and failed side by side", async () => {
		const box = outbox("node-1:d");
		await box.enqueue(verifyTo("refused@example.com", "t-log"));
		await box.enqueue(verifyTo("fine@example.com", "t-log"));
		await box.tick();
		await box.enqueue(verifyTo("later@example.com", "t-log"));
		const log = await box.log("t-log", 1, 10);
		expect(log.rows.map(r => [r.to, r.status, r.lastError])).toEqual([
			["later@example.com", "queued", null],
			["fine@example.com", "sent", null],
			["refused@example.com", "failed", "The mail server refused the recipient: 550 No such user"]
		]);
	});
});

describe("email in the embedded mode (no SMTP_URL)", () => {
	let tb: TestBroker;
	let dataDir: string;
	let mailDir: string;
	let logLines: string[];

	beforeAll(async () => {
		dataDir = tempDir();
		mailDir = path.join(dataDir, "mail");
		tb = await startBroker([NotificationsService], { DATA_DIR: dataDir, NOTIFICATIONS_POLL_MS: "50" });
		logLines = [];
		const logger = tb.broker.getLocalService("notifications")!.logger;
		for (const level of ["info", "warn", "error", "debug"] as const) {
			jest.spyOn(logger, level).mockImplementation((...args: unknown[]) => void logLines.push(args.map(String).join(" ")));
		}
	});

	afterAll(async () => {
		await tb?.stop();
		jest.restoreAllMocks();
		fs.rmSync(dataDir, { recursive: true, force: true });
	});

	it("writes each message as an .eml file under DATA_DIR/mail and logs it without the link", async () => {
		for (const message of messages("t-files")) {
			const before = new Set(fs.existsSync(mailDir) ? fs.readdirSync(mailDir) : []);
			logLines.length = 0;
			await sendToChannel(tb.broker, EMAIL_CHANNEL, message);
			await waitFor("the .eml file", () => fs.readdirSync(mailDir).some(name => !before.has(name)));

			const added = fs.readdirSync(mailDir).filter(name => !before.has(name));
			expect(added).toHaveLength(1);
			expect(added[0]).toMatch(new RegExp(`^\\d{8}T\\d{6}\\.\\d{3}Z-${message.template}-[0-9a-f]{8}\\.eml$`));
			const file = path.join(mailDir, added[0]);
			expect(fs.statSync(file).mode & 0o777).toBe(0o600);

			const raw = fs.readFileSync(file);
			expect(raw.toString("latin1")).toMatch(/\r\n\r\n/); // RFC 5322: CRLF line ends, header/body split
			const mail = await simpleParser(raw);
			expectMessage(mail, message, "no-reply@marquee.local");
			const doc = await notificationsOf(tb.broker).db.email_outbox.findDoc({ requestId: message.id });
			expect(doc).toMatchObject({ status: "sent", messageId: mail.messageId });

			await waitFor("the log line", () => logLines.includes(`Mail to ${message.to} written to ${file}`));
			expect(logLines).toEqual([`Mail "${message.template}" to ${message.to} queued`, `Mail to ${message.to} written to ${file}`]);
			expect(logLines.join("\n")).not.toContain("secret");
		}
	});

	it("refuses an unusable request without storing or writing anything", async () => {
		const outbox = notificationsOf(tb.broker).outbox;
		const before = fs.readdirSync(mailDir).length;
		const bad: EmailRequest[] = [
			{ ...verifyTo("not-an-email"), to: "not-an-email" },
			{ ...verifyTo("a@example.com"), to: "a@example.com,eve@evil.example" },
			{ ...verifyTo("a@example.com"), data: { name: "A", url: "javascript:alert(1)" } }
		];
		for (const request of bad) await expect(outbox.enqueue(request)).rejects.toMatchObject({ type: "VALIDATION_ERROR", code: 422 });
		expect(await notificationsOf(tb.broker).db.email_outbox.countDocs({ requestId: { $in: bad.map(r => r.id) } })).toBe(0);
		expect(fs.readdirSync(mailDir)).toHaveLength(before);
	});
});

describe("email over REST", () => {
	let gw: TestGateway;

	beforeAll(async () => {
		// ProbeService: a routed service beside it, so the document is not empty by accident
		gw = await startGateway([NotificationsService, ProbeService]);
	});
	afterAll(() => gw?.stop());

	it("no route sends email: the only mail path is the admins' log, read-only", async () => {
		const doc = await request<{ paths: Record<string, Record<string, unknown>> }>(`${gw.url}/api/openapi.json`);
		expect(doc.status).toBe(200);
		expect(Object.keys(doc.body.paths).some(p => p.startsWith("/api/v1/probe"))).toBe(true);
		const mailPaths = Object.entries(doc.body.paths).filter(([p]) => /email|mail/i.test(p));
		expect(mailPaths.map(([p, methods]) => [p, Object.keys(methods)])).toEqual([["/api/v1/notifications/emails", ["get"]]]);
		expect(doc.text).not.toContain("sendEmail");
	});

	it("answers 404 on the paths a send action could have had, and sends nothing", async () => {
		const mailDir = path.join(gw.config.dataDir, "mail");
		for (const url of ["/api/v1/notifications/sendEmail", "/api/v1/notifications/send-email", "/api/v1/notifications.sendEmail", "/api/v1/sendEmail", "/api/v1/notifications/emails"]) {
			const res = await request(`${gw.url}${url}`, { method: "POST", json: messages(null)[0] });
			expect(res.status).toBe(404);
		}
		expect(fs.existsSync(mailDir) ? fs.readdirSync(mailDir) : []).toEqual([]);
	});
});
