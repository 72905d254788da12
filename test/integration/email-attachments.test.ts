/**
 * Email attachments end to end: a weekly proof-of-play report sent on the `notifications.email`
 * channel with its CSV arrives at a real in-test SMTP server (smtp-server, parsed by mailparser)
 * with its file name, content type and exact bytes, and is written the same way to an .eml file
 * in the embedded mode. Unusable attachments (a folder in the name, too big, too many) are
 * refused and dropped with a log line naming the fields: nothing stored, nothing sent, the
 * service keeps working. No log line carries an attachment's name or content.
 */
import fs from "node:fs";
import path from "node:path";
import type { Service, ServiceBroker } from "moleculer";
import { simpleParser, type ParsedMail } from "mailparser";
import { SMTPServer } from "smtp-server";
import type { DbVars } from "../../mixins/db.mixin";
import NotificationsService from "../../services/notifications.service";
import type { COLLECTIONS } from "../../services/notifications/documents";
import { EMAIL_CHANNEL } from "../../shared/channels";
import { sendToChannel, type EmailAttachment, type EmailRequest } from "../../shared/contracts";
import { waitForMail, type Platform } from "../helpers/accounts";
import { startBroker, tempDir, type TestBroker } from "../helpers/platform";
import { freePort } from "../helpers/servers";

/**
 * A report's CSV as analytics writes it: CRLF line ends, quoted fields with commas and doubled
 * quotes, non-Latin names and emoji, a line longer than a mail line, no newline at the end.
 */
const CSV = [
	"contentId,contentName,plays,durationMs,avgDurationMs,completionRate",
	'c-1,"Café ""Zürich"", lobby",6344,3900000,614.75,0.98',
	"c-2,東京ロビー 📺👩‍💻,6000,21600000,3600,1",
	`c-3,${"Long name ".repeat(12).trim()},1,29000,29000,0`,
	"c-4,=HYPERLINK(\"x\"),0,0,0,0"
].join("\r\n");
const CSV_FILE = "proof-of-play-2026-11-23.csv";

let ids = 0;

function reportTo(to: string, attachments: unknown = [{ filename: CSV_FILE, contentType: "text/csv", content: CSV }]): EmailRequest {
	ids += 1;
	return {
		id: `report:sched-1:2026-11-23:${to}:${process.pid}-${ids}`,
		tenantId: "t-reports",
		to,
		template: "playbackReport",
		data: {
			tenantName: "Acme Cinemas",
			reportName: "Lobby screens",
			period: "23 Nov – 29 Nov 2026",
			plays: 12_345,
			durationMs: 43_500_000,
			rows: [
				{ name: "Café “Zürich”, lobby", plays: 6_344, durationMs: 3_900_000 },
				{ name: "東京ロビー 📺👩‍💻", plays: 6_000, durationMs: 21_600_000 },
				{ name: "Menu board", plays: 1, durationMs: 29_000 }
			],
			url: "https://cms.example.com/analytics"
		},
		attachments
	} as EmailRequest;
}

/** The report's facts, and the CSV exactly as sent, in a received message. */
async function expectReport(mail: ParsedMail, files: EmailAttachment[]): Promise<void> {
	expect(mail.subject).toBe("Proof of play: Lobby screens (23 Nov – 29 Nov 2026)");
	expect(mail.text).toContain("In total: 12,345 plays, 12 h 05 min of playing time.");
	expect(mail.text).toContain("- “東京ロビー 📺👩‍💻”: 6,000 plays, 6 h 00 min");
	expect(mail.html as string).toContain("“Café “Zürich”, lobby”: 6,344 plays, 1 h 05 min");
	expect(mail.text).toContain("The full table, with every content item, is attached as a CSV file.");
	expect(mail.attachments.map(a => [a.filename, a.contentType, a.contentDisposition])).toEqual(files.map(f => [f.filename, f.contentType, "attachment"]));
	mail.attachments.forEach((attachment, i) => {
		expect(Buffer.compare(attachment.content, Buffer.from(files[i].content, "utf8"))).toBe(0);
	});
}

/** Polls `check` until it answers true; fails naming `what` after a generous while (never a timing assertion). */
async function waitFor(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
	for (let i = 0; i < 1000; i++) {
		if (await check()) return;
		await new Promise(resolve => setTimeout(resolve, 10));
	}
	throw new Error(`timed out waiting for ${what}`);
}

type NotificationsInstance = Service & DbVars<typeof COLLECTIONS>;

function notificationsOf(broker: ServiceBroker): NotificationsInstance {
	return broker.getLocalService("notifications") as NotificationsInstance;
}

/** Every line the notifications service logs, as text. */
function captureLogs(broker: ServiceBroker): string[] {
	const lines: string[] = [];
	const logger = broker.getLocalService("notifications")!.logger;
	for (const level of ["info", "warn", "error", "debug"] as const) {
		jest.spyOn(logger, level).mockImplementation((...args: unknown[]) => void lines.push(`${level} ${args.map(String).join(" ")}`));
	}
	return lines;
}

/** Nothing of a file, its name included, in any log line. */
const FILE_TRACES = /proof-of-play|Zürich|HYPERLINK|contentName|\.csv|passwd/;

interface Received {
	envelopeTo: string[];
	mail: ParsedMail;
}

describe("email attachments over SMTP", () => {
	const received: Received[] = [];
	let smtp: SMTPServer;
	let tb: TestBroker;
	let logLines: string[];

	const to = (address: string) => received.filter(r => r.envelopeTo.includes(address));

	beforeAll(async () => {
		const port = await freePort();
		smtp = new SMTPServer({
			authOptional: true,
			disabledCommands: ["STARTTLS"],
			logger: false,
			// Idle pooled client connections are told 421 and closed at once, not after 30 s.
			closeTimeout: 50,
			// room for 2 MiB of files, base64-encoded
			size: 10 * 1024 * 1024,
			onData(stream, session, callback) {
				simpleParser(stream).then(
					mail => {
						received.push({ envelopeTo: session.envelope.rcptTo.map(r => r.address), mail });
						callback();
					},
					(err: Error) => callback(err)
				);
			}
		});
		await new Promise<void>((resolve, reject) => {
			smtp.once("error", reject);
			smtp.listen(port, "127.0.0.1", () => resolve());
		});
		tb = await startBroker([NotificationsService], {
			SMTP_URL: `smtp://127.0.0.1:${port}`,
			MAIL_FROM: "Marquee Signage <signage@example.com>",
			EMAIL_RETRY_SCHEDULE: Array(20).fill("50ms").join(","),
			NOTIFICATIONS_POLL_MS: "50"
		});
		logLines = captureLogs(tb.broker);
	});

	afterAll(async () => {
		await tb?.stop();
		jest.restoreAllMocks();
		await new Promise<void>(resolve => (smtp ? smtp.close(() => resolve()) : resolve()));
	});

	it("a report's CSV arrives with its file name, content type and exact bytes, and is logged without it", async () => {
		const message = reportTo("ops@example.com");
		await sendToChannel(tb.broker, EMAIL_CHANNEL, message);
		await waitFor("the report", () => to("ops@example.com").length === 1);
		await expectReport(to("ops@example.com")[0].mail, [{ filename: CSV_FILE, contentType: "text/csv", content: CSV }]);
		await waitFor("the sent email", async () => (await notificationsOf(tb.broker).db.email_outbox.countDocs({ requestId: message.id, status: "sent" })) === 1);
		expect(logLines.join("\n")).not.toMatch(FILE_TRACES);
	});

	it("up to three files arrive, in order, each with its own name, type and bytes", async () => {
		const files: EmailAttachment[] = [
			{ filename: CSV_FILE, contentType: "text/csv", content: CSV },
			{ filename: "read me.txt", contentType: "text/plain", content: "Plays are counted per display.\n" },
			{ filename: "Übersicht (KW 48).json", contentType: "application/json", content: JSON.stringify({ plays: 12_345, top: "東京ロビー" }) }
		];
		await sendToChannel(tb.broker, EMAIL_CHANNEL, reportTo("three@example.com", files));
		await waitFor("the report", () => to("three@example.com").length === 1);
		await expectReport(to("three@example.com")[0].mail, files);
	});

	it("unusable attachments (a folder in the name, too big, too many) are refused and dropped: nothing stored or sent, and the service goes on", async () => {
		const csv = (change: Partial<EmailAttachment> = {}) => ({ filename: CSV_FILE, contentType: "text/csv", content: CSV, ...change });
		const MiB = 1024 * 1024;
		const bad: Array<[EmailRequest, string]> = [
			[reportTo("path@example.com", [csv({ filename: "../../etc/passwd" })]), "attachments[0].filename"],
			[reportTo("windows-path@example.com", [csv({ filename: "C:\\reports\\week.csv" })]), "attachments[0].filename"],
			[reportTo("too-big@example.com", [csv({ content: "x".repeat(2 * MiB) }), csv()]), "attachments"],
			[reportTo("too-many@example.com", [csv(), csv(), csv(), csv()]), "attachments"]
		];
		for (const [message] of bad) await sendToChannel(tb.broker, EMAIL_CHANNEL, message);
		for (const [message, field] of bad) {
			const line = `warn Email "playbackReport" (${message.id}) refused and dropped: Validation failed (${field})`;
			await waitFor(`the refusal of ${message.to}`, () => logLines.includes(line));
		}

		// the service still takes and sends email
		await sendToChannel(tb.broker, EMAIL_CHANNEL, reportTo("after@example.com"));
		await waitFor("the next report", () => to("after@example.com").length === 1);
		await expectReport(to("after@example.com")[0].mail, [{ filename: CSV_FILE, contentType: "text/csv", content: CSV }]);

		const emails = notificationsOf(tb.broker).db.email_outbox;
		expect(await emails.countDocs({ requestId: { $in: bad.map(([m]) => m.id) } })).toBe(0);
		for (const [message] of bad) expect(to(message.to)).toEqual([]);
		expect(logLines.join("\n")).not.toMatch(FILE_TRACES);
	});
});

describe("email attachments in the embedded mode (no SMTP_URL)", () => {
	let tb: TestBroker;
	let dataDir: string;

	beforeAll(async () => {
		dataDir = tempDir();
		tb = await startBroker([NotificationsService], { DATA_DIR: dataDir, NOTIFICATIONS_POLL_MS: "50" });
	});

	afterAll(async () => {
		await tb?.stop();
		fs.rmSync(dataDir, { recursive: true, force: true });
	});

	it("writes the CSV into the .eml file, byte for byte", async () => {
		await sendToChannel(tb.broker, EMAIL_CHANNEL, reportTo("files@example.com"));
		// mailbox()/waitForMail() read only the platform's DATA_DIR
		await waitForMail({ dataDir } as Platform, "files@example.com", 1);
		const mailDir = path.join(dataDir, "mail");
		const [file] = fs.readdirSync(mailDir).filter(name => name.includes("-playbackReport-"));
		const raw = fs.readFileSync(path.join(mailDir, file));
		const mail = await simpleParser(raw);
		await expectReport(mail, [{ filename: CSV_FILE, contentType: "text/csv", content: CSV }]);
	});
});
