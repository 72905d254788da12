/**
 * notifications.sendEmail end to end: over SMTP to a real in-test server (smtp-server), into
 * DATA_DIR/mail as .eml files in the embedded mode, refusing bad params without sending, and
 * never reachable through the gateway.
 */
import fs from "node:fs";
import path from "node:path";
import type { ServiceBroker } from "moleculer";
import { simpleParser, type AddressObject, type ParsedMail } from "mailparser";
import { SMTPServer } from "smtp-server";
import NotificationsService from "../../services/notifications.service";
import type { Result, SendEmailParams } from "../../shared/contracts";
import { AppError } from "../../shared/errors";
import { freePort } from "../helpers/servers";
import { request, startBroker, startGateway, tempDir, type TestBroker, type TestGateway } from "../helpers/platform";
import { ProbeService } from "../helpers/stub-services";

const EXPIRES_AT = "2026-12-01T09:30:00.000Z";

/** One message per template, each link with its own secret token. */
const MESSAGES: SendEmailParams[] = [
	{ to: "ada@example.com", template: "verify", data: { name: "Ada", url: "https://cms.example.com/verify?token=verify-secret-1" } },
	{
		to: "bob@example.com",
		template: "reset",
		data: { name: "Bob", url: "https://cms.example.com/reset?token=reset-secret-2", expiresInMinutes: 30 }
	},
	{
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

const SUBJECTS: Record<SendEmailParams["template"], string> = {
	verify: "Verify your email address for Marquee",
	reset: "Reset your Marquee password",
	invitation: "You are invited to join an organisation on Marquee"
};

/** Params that must be refused before anything is sent. */
const INVALID: Array<{ params: Record<string, unknown>; field: string }> = [
	{ params: { to: "not-an-email", template: "verify", data: MESSAGES[0].data }, field: "to" },
	{ params: { to: "a@example.com,eve@evil.example", template: "verify", data: MESSAGES[0].data }, field: "to" },
	{ params: { to: `"x"@evil.example,"y"@example.com`, template: "verify", data: MESSAGES[0].data }, field: "to" },
	{ params: { to: "a@example.com", template: "welcome", data: {} }, field: "template" },
	{ params: { to: "a@example.com", template: "verify" }, field: "data" },
	{ params: { to: "a@example.com", template: "verify", data: { name: "A" } }, field: "data.url" },
	{ params: { to: "a@example.com", template: "verify", data: { name: "A", url: "javascript:alert(1)" } }, field: "data.url" },
	{ params: { to: "a@example.com", template: "reset", data: { name: "A", url: "https://x.example/r" } }, field: "data.expiresInMinutes" },
	{
		params: { to: "a@example.com", template: "invitation", data: { ...MESSAGES[2].data, expiresAt: undefined, role: "root" } },
		field: "data.expiresAt"
	}
];

function send(broker: ServiceBroker, params: SendEmailParams | Record<string, unknown>): Promise<Result<"notifications.sendEmail">> {
	return broker.call("notifications.sendEmail", params);
}

function addresses(value: AddressObject | AddressObject[] | undefined): string[] {
	const list = value === undefined ? [] : Array.isArray(value) ? value : [value];
	return list.flatMap(a => a.value.map(v => v.address ?? ""));
}

/** The message came out with its recipient, subject and link in both parts. */
function expectMessage(mail: ParsedMail, params: SendEmailParams, from: string): void {
	expect(addresses(mail.to)).toEqual([params.to]);
	expect(addresses(mail.from)).toEqual([from]);
	expect(mail.subject).toBe(SUBJECTS[params.template]);
	expect(mail.text).toContain(params.data.url);
	expect(typeof mail.html).toBe("string");
	expect(mail.html as string).toContain(`href="${params.data.url}"`);
}

async function expectValidationError(promise: Promise<unknown>, field: string): Promise<void> {
	const err = (await promise.then(
		() => {
			throw new Error("expected a validation error");
		},
		(e: unknown) => e
	)) as AppError;
	expect(err).toMatchObject({ type: "VALIDATION_ERROR", code: 422 });
	const fields = (err.data as Array<{ field: string }>).map(f => f.field);
	expect(fields).toContain(field);
	// Per-template data checks throw the project's AppError; the params schema throws Moleculer's
	// own ValidationError (same type and code, mapped alike by the gateway's error format).
	if (field.startsWith("data.")) expect(err).toBeInstanceOf(AppError);
	else expect(["AppError", "ValidationError"]).toContain(err.name);
	// a rejected link is never echoed: it may carry a token
	expect(JSON.stringify(err.data)).not.toContain("javascript:");
}

interface Received {
	envelopeFrom: string;
	envelopeTo: string[];
	mail: ParsedMail;
}

describe("notifications.sendEmail over SMTP", () => {
	let smtp: SMTPServer;
	let port: number;
	let tb: TestBroker;
	const received: Received[] = [];
	const FROM = "signage@example.com";

	beforeAll(async () => {
		port = await freePort();
		smtp = new SMTPServer({
			authOptional: true,
			allowInsecureAuth: true,
			disabledCommands: ["STARTTLS"],
			logger: false,
			onRcptTo(address, _session, callback) {
				callback(address.address === "refused@example.com" ? Object.assign(new Error("No such user"), { responseCode: 550 }) : null);
			},
			onData(stream, session, callback) {
				simpleParser(stream).then(
					mail => {
						received.push({
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
		await new Promise<void>(resolve => smtp.listen(port, "127.0.0.1", () => resolve()));
		tb = await startBroker([NotificationsService], { SMTP_URL: `smtp://127.0.0.1:${port}`, MAIL_FROM: `Marquee Signage <${FROM}>` });
	});

	afterAll(async () => {
		await tb?.stop();
		await new Promise<void>(resolve => (smtp ? smtp.close(() => resolve()) : resolve()));
	});

	it("delivers each template to the SMTP server", async () => {
		for (const params of MESSAGES) {
			const before = received.length;
			const result = await send(tb.broker, params);
			expect(result).toEqual({ messageId: expect.stringMatching(/^<.+@.+>$/) });
			expect(received).toHaveLength(before + 1);
			const got = received[received.length - 1];
			expect(got.envelopeFrom).toBe(FROM);
			expect(got.envelopeTo).toEqual([params.to]);
			expectMessage(got.mail, params, FROM);
			expect(got.mail.messageId).toBe(result.messageId);
			expect(addresses(got.mail.from)).toEqual([FROM]);
			expect((got.mail.from as AddressObject).value[0].name).toBe("Marquee Signage");
		}
		const invitation = received[received.length - 1].mail;
		expect(invitation.text).toContain("as an admin");
		expect(invitation.text).toContain("1 December 2026 at 09:30 UTC");
	});

	it("refuses invalid params and sends nothing", async () => {
		const before = received.length;
		for (const { params, field } of INVALID) await expectValidationError(send(tb.broker, params), field);
		expect(received).toHaveLength(before);
	});

	it("strips unknown fields: no extra recipients or headers can be passed", async () => {
		const before = received.length;
		await send(tb.broker, { ...MESSAGES[0], cc: "eve@evil.example", bcc: "eve@evil.example", from: "ceo@example.com" });
		expect(received).toHaveLength(before + 1);
		const got = received[received.length - 1];
		expect(got.envelopeTo).toEqual([MESSAGES[0].to]);
		expect(got.envelopeFrom).toBe(FROM);
		expect(got.mail.cc).toBeUndefined();
	});

	it("a recipient the server refuses is a validation error on `to`", async () => {
		const err = await send(tb.broker, { ...MESSAGES[0], to: "refused@example.com" }).catch((e: unknown) => e);
		expect(err).toBeInstanceOf(AppError);
		expect(err).toMatchObject({ type: "VALIDATION_ERROR", data: [expect.objectContaining({ field: "to" })] });
	});

	it("an unreachable SMTP server answers SERVICE_UNAVAILABLE", async () => {
		const closedPort = await freePort();
		const down = await startBroker([NotificationsService], { SMTP_URL: `smtp://127.0.0.1:${closedPort}` });
		try {
			const err = await send(down.broker, MESSAGES[0]).catch((e: unknown) => e);
			expect(err).toBeInstanceOf(AppError);
			expect(err).toMatchObject({ type: "SERVICE_UNAVAILABLE", code: 503 });
			expect((err as AppError).message).not.toContain("token");
		} finally {
			await down.stop();
		}
	});
});

describe("notifications.sendEmail in the embedded mode (no SMTP_URL)", () => {
	let tb: TestBroker;
	let dataDir: string;
	let mailDir: string;
	let logLines: string[];

	beforeAll(async () => {
		dataDir = tempDir();
		mailDir = path.join(dataDir, "mail");
		tb = await startBroker([NotificationsService], { DATA_DIR: dataDir });
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

	it("writes each message as an .eml file under DATA_DIR/mail and logs one line without the link", async () => {
		for (const params of MESSAGES) {
			const before = new Set(fs.readdirSync(mailDir));
			logLines.length = 0;
			const result = await send(tb.broker, params);

			const added = fs.readdirSync(mailDir).filter(name => !before.has(name));
			expect(added).toHaveLength(1);
			expect(added[0]).toMatch(new RegExp(`^\\d{8}T\\d{6}\\.\\d{3}Z-${params.template}-[0-9a-f]{8}\\.eml$`));
			const file = path.join(mailDir, added[0]);
			expect(fs.statSync(file).mode & 0o777).toBe(0o600);

			const raw = fs.readFileSync(file);
			expect(raw.toString("latin1")).toMatch(/\r\n\r\n/); // RFC 5322: CRLF line ends, header/body split
			const mail = await simpleParser(raw);
			expectMessage(mail, params, "no-reply@marquee.local");
			expect(mail.messageId).toBe(result.messageId);

			expect(logLines).toEqual([`Mail to ${params.to} written to ${file}`]);
			expect(logLines.join("\n")).not.toContain("secret");
		}
	});

	it("refuses invalid params and writes nothing", async () => {
		const before = fs.readdirSync(mailDir).length;
		for (const { params, field } of INVALID) await expectValidationError(send(tb.broker, params), field);
		expect(fs.readdirSync(mailDir)).toHaveLength(before);
	});
});

describe("notifications over REST", () => {
	let gw: TestGateway;

	beforeAll(async () => {
		// ProbeService: a routed service beside it, so the document is not empty by accident
		gw = await startGateway([NotificationsService, ProbeService]);
	});
	afterAll(() => gw?.stop());

	it("has no route: the OpenAPI document lists no notifications path", async () => {
		const doc = await request<{ paths: Record<string, unknown> }>(`${gw.url}/api/openapi.json`);
		expect(doc.status).toBe(200);
		const paths = Object.keys(doc.body.paths);
		expect(paths.some(p => p.startsWith("/api/v1/probe"))).toBe(true);
		expect(paths.filter(p => /notification|email|mail/i.test(p))).toEqual([]);
		expect(doc.text).not.toContain("notifications.sendEmail");
	});

	it("answers 404 on the paths an auto-alias would have used, and sends nothing", async () => {
		const mailDir = path.join(gw.config.dataDir, "mail");
		for (const url of ["/api/v1/notifications/sendEmail", "/api/v1/notifications/send-email", "/api/v1/notifications.sendEmail", "/api/v1/sendEmail"]) {
			const res = await request(`${gw.url}${url}`, { method: "POST", json: MESSAGES[0] });
			expect(res.status).toBe(404);
		}
		expect(fs.existsSync(mailDir) ? fs.readdirSync(mailDir) : []).toEqual([]);
	});

	it("stays callable by other services", async () => {
		const result = await send(gw.broker, MESSAGES[0]);
		expect(result.messageId).toMatch(/^<.+@.+>$/);
	});
});
