/**
 * Email templates (services/notifications/templates.ts): each renders subject, HTML and text from
 * its data; HTML escapes every value (hostile, non-Latin and emoji names alike); links are
 * http(s) only; bad data names its fields, nested ones included.
 */
import { AppError } from "../../shared/errors";
import { EMAIL_TEMPLATES, type EmailData, type EmailTemplate } from "../../shared/contracts";
import { escapeHtml, parseEmailData, renderEmail, safeUrl } from "../../services/notifications/templates";
import { isSingleAddress } from "../../services/notifications/mailer";

const URL_WITH_TOKEN = "https://cms.example.com/verify?token=abc123&next=%2Fdisplays";
const LOBBY = { displayId: "0193a6f0-0000-7000-8000-000000000001", name: "Lobby", lastSeenAt: "2026-11-22T14:05:00.000Z" };

const SAMPLES: EmailData = {
	verify: { name: "Ada Lovelace", url: URL_WITH_TOKEN },
	reset: { name: "Ada Lovelace", url: "https://cms.example.com/reset?token=r3s3t", expiresInMinutes: 60 },
	securityNotice: { name: "Ada Lovelace", event: "recoveryCodeUsed", at: "2026-12-01T09:30:00.000Z", ip: "203.0.113.7", url: "https://cms.example.com/account/security" },
	invitation: {
		inviterName: "Grace Hopper",
		tenantName: "Acme Cinemas",
		role: "editor",
		url: "https://cms.example.com/invitations/accept?token=inv1t3",
		expiresAt: "2026-12-01T09:30:00.000Z"
	},
	displayOffline: { name: "Ada Lovelace", tenantName: "Acme Cinemas", display: LOBBY, offlineMinutes: 75, url: "https://cms.example.com/displays/d-1" },
	displayOnline: { name: "Ada Lovelace", tenantName: "Acme Cinemas", display: LOBBY, offlineMinutes: 3000, url: "https://cms.example.com/displays/d-1" },
	offlineDigest: {
		name: "Ada Lovelace",
		tenantName: "Acme Cinemas",
		count: 3,
		displays: [LOBBY, { displayId: "d-2", name: "Foyer", lastSeenAt: null }, { displayId: "d-3", name: "Bar", lastSeenAt: "2026-11-22T14:06:00.000Z" }],
		url: "https://cms.example.com/displays?status=offline"
	},
	quotaWarning: { name: "Ada Lovelace", tenantName: "Acme Cinemas", resource: "displays", used: 9, limit: 10, url: "https://cms.example.com/billing" },
	paymentFailed: { name: "Ada Lovelace", tenantName: "Acme Cinemas", amountDue: "€24.00", url: "https://cms.example.com/billing" },
	webhookDisabled: {
		name: "Ada Lovelace",
		tenantName: "Acme Cinemas",
		endpointUrl: "https://hooks.example.com/marquee",
		reason: "It answered 410 Gone",
		url: "https://cms.example.com/webhooks"
	},
	playbackReport: {
		tenantName: "Acme Cinemas",
		reportName: "Lobby screens",
		period: "23 Nov – 29 Nov 2026",
		plays: 12_345,
		// 12 hours 5 minutes
		durationMs: 43_500_000,
		rows: [
			// 65 minutes
			{ name: "Welcome loop", plays: 6_344, durationMs: 3_900_000 },
			// 6 hours
			{ name: "Summer promo", plays: 6_000, durationMs: 21_600_000 },
			// 29 seconds
			{ name: "Menu board", plays: 1, durationMs: 29_000 }
		],
		url: "https://cms.example.com/analytics"
	}
};

/** Names a tenant member may choose: markup, quotes, right-to-left and CJK script, emoji (ZWJ sequences too). */
const HOSTILE = `<script>alert("x")</script> & 'co'`;
const HOSTILE_ESCAPED = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;co&#39;";
const WORLD_NAMES = ["東京ロビー", "شاشة الاستقبال", "Экран №1", "📺 Lobby 👩‍💻", "Café Zürich"];

function render<T extends EmailTemplate>(template: T, data: Partial<EmailData[T]> = {}) {
	return renderEmail(template, { ...SAMPLES[template], ...data } as EmailData[T]);
}

function validationFields(fn: () => unknown): string[] {
	try {
		fn();
	} catch (err) {
		expect(err).toBeInstanceOf(AppError);
		expect(err).toMatchObject({ type: "VALIDATION_ERROR", code: 422 });
		return ((err as AppError).data as Array<{ field: string }>).map(f => f.field).sort();
	}
	throw new Error("expected a validation error");
}

describe("email templates", () => {
	it("verify: subject, greeting and link in HTML and text", () => {
		const mail = render("verify");
		expect(mail.subject).toBe("Verify your email address for Marquee");
		expect(mail.html).toContain("Hi Ada Lovelace,");
		expect(mail.html).toContain(`href="${escapeHtml(URL_WITH_TOKEN)}"`);
		expect(mail.html).toContain("Marquee");
		expect(mail.text).toContain("Hi Ada Lovelace,");
		expect(mail.text).toContain(URL_WITH_TOKEN);
		expect(mail.text).not.toMatch(/<[a-z]/i);
	});

	it("reset: validity in words, link in both parts", () => {
		const mail = render("reset");
		expect(mail.subject).toBe("Reset your Marquee password");
		expect(mail.html).toContain("valid for 1 hour");
		expect(mail.text).toContain("valid for 1 hour");
		expect(mail.text).toContain(SAMPLES.reset.url);
		expect(mail.html).toContain(`href="${SAMPLES.reset.url}"`);
		expect(render("reset", { expiresInMinutes: 30 }).text).toContain("valid for 30 minutes");
		expect(render("reset", { expiresInMinutes: 2880 }).text).toContain("valid for 2 days");
	});

	it("invitation: inviter, organisation, role and expiry", () => {
		const mail = render("invitation");
		// Names chosen by the inviter never reach the subject.
		expect(mail.subject).toBe("You are invited to join an organisation on Marquee");
		for (const part of [mail.html, mail.text]) {
			expect(part).toContain("“Grace Hopper” has invited you to join the organisation “Acme Cinemas” on Marquee as an editor.");
			expect(part).toContain("1 December 2026");
			expect(part).toContain("09:30 UTC");
		}
		expect(mail.text).toContain(SAMPLES.invitation.url);
		expect(mail.html).toContain(`href="${SAMPLES.invitation.url}"`);
		expect(render("invitation", { role: "viewer" }).text).toContain("as a viewer.");
	});

	it("displayOffline: the display in the subject, how long, last seen, the link", () => {
		const mail = render("displayOffline");
		expect(mail.subject).toBe("Display “Lobby” is offline");
		for (const part of [mail.html, mail.text]) {
			expect(part).toContain("Hi Ada Lovelace,");
			expect(part).toContain("The display “Lobby” of “Acme Cinemas” has been offline for 1 hour 15 minutes (last seen 22 November 2026 at 14:05 UTC).");
			expect(part).toContain("You receive this because you manage “Acme Cinemas” on Marquee.");
		}
		expect(mail.html).toContain('href="https://cms.example.com/displays/d-1"');
		expect(mail.text).toContain("View display:\nhttps://cms.example.com/displays/d-1");
		expect(render("displayOffline", { display: { ...LOBBY, lastSeenAt: null }, offlineMinutes: 10 }).text).toContain("offline for 10 minutes (never connected)");
		expect(render("displayOffline", { offlineMinutes: 0 }).text).toContain("offline for less than a minute");
	});

	it("displayOnline: back after how long", () => {
		const mail = render("displayOnline");
		expect(mail.subject).toBe("Display “Lobby” is back online");
		expect(mail.text).toContain("The display “Lobby” of “Acme Cinemas” is back online after 2 days 2 hours offline.");
		expect(mail.html).toContain("is back online after 2 days 2 hours offline.");
		expect(mail.html).toContain('href="https://cms.example.com/displays/d-1"');
		expect(render("displayOnline", { offlineMinutes: 1 }).text).toContain("after 1 minute offline.");
		expect(render("displayOnline", { offlineMinutes: 120 }).text).toContain("after 2 hours offline.");
	});

	it("offlineDigest: one email listing the displays, the rest counted", () => {
		const mail = render("offlineDigest");
		expect(mail.subject).toBe("3 displays went offline");
		expect(mail.text).toContain("3 displays of “Acme Cinemas” went offline at about the same time.");
		expect(mail.text).toContain(
			["- “Lobby”, last seen 22 November 2026 at 14:05 UTC", "- “Foyer”, never connected", "- “Bar”, last seen 22 November 2026 at 14:06 UTC"].join("\n")
		);
		expect(mail.html).toContain("<li style=\"margin:0 0 4px;\">“Foyer”, never connected</li>");
		expect(mail.html).toContain(`href="${escapeHtml(SAMPLES.offlineDigest.url)}"`);

		const many = Array.from({ length: 60 }, (_, i) => ({ displayId: `d-${i}`, name: `Screen ${i}`, lastSeenAt: null }));
		const big = render("offlineDigest", { count: 200, displays: many });
		expect(big.subject).toBe("200 displays went offline");
		expect(big.text).toContain("- “Screen 49”, never connected\n- and 150 more\n");
		expect(big.text).not.toContain("Screen 50");
	});

	it("quotaWarning: used of limit per resource, storage in bytes units, reached or close", () => {
		const displays = render("quotaWarning");
		expect(displays.subject).toBe("You are close to your plan's display limit");
		expect(displays.text).toContain("“Acme Cinemas” is using 9 of the 10 displays its plan allows (90%).");
		expect(displays.html).toContain('href="https://cms.example.com/billing"');

		const storage = render("quotaWarning", { resource: "storageBytes", used: 966_367_641, limit: 1_073_741_824 });
		expect(storage.subject).toBe("You are close to your plan's storage limit");
		expect(storage.text).toContain("is using 921.6 MB of the 1 GB of storage its plan allows (89%).");

		const members = render("quotaWarning", { resource: "members", used: 5, limit: 5 });
		expect(members.subject).toBe("You have reached your plan's member limit");
		expect(members.text).toContain("is using 5 of the 5 members its plan allows (100%).");
		expect(members.text).toContain("Nothing more can be added");
	});

	it("paymentFailed: the amount and where to fix it", () => {
		const mail = render("paymentFailed");
		expect(mail.subject).toBe("Payment failed for your Marquee subscription");
		for (const part of [mail.html, mail.text]) expect(part).toContain("We could not collect the payment of €24.00 for the Marquee subscription of “Acme Cinemas”.");
		expect(mail.html).toContain('href="https://cms.example.com/billing"');
	});

	it("securityNotice: what happened, when and from which address; an operator's reset names no address", () => {
		const used = render("securityNotice");
		expect(used.subject).toBe("A recovery code was used to sign in to your Marquee account");
		expect(used.text).toContain("This happened at 2026-12-01 09:30 UTC from the address 203.0.113.7.");
		const reset = render("securityNotice", { event: "twoFactorReset", ip: "" });
		expect(reset.subject).toBe("Two-factor authentication was reset for your Marquee account");
		expect(reset.text).toContain("turned two-factor authentication off for your account and ended all of its sessions");
		expect(reset.text).toContain("This happened at 2026-12-01 09:30 UTC.");
		expect(reset.text).not.toContain("address");
		expect(validationFields(() => parseEmailData("securityNotice", { ...SAMPLES.securityNotice, ip: 7 as unknown as string }))).toEqual(["data.ip"]);
	});

	it("webhookDisabled: the endpoint without its query or user part, the reason, the link", () => {
		const mail = render("webhookDisabled");
		expect(mail.subject).toBe("A webhook endpoint was disabled");
		for (const part of [mail.html, mail.text]) {
			expect(part).toContain("Marquee stopped sending events to the webhook endpoint https://hooks.example.com/marquee of “Acme Cinemas”.");
			expect(part).toContain("Reason: It answered 410 Gone");
		}
		expect(mail.html).toContain('href="https://cms.example.com/webhooks"');
		// A receiver's URL may hold credentials: they never reach an email.
		const secret = render("webhookDisabled", { endpointUrl: "https://user:pa55@hooks.example.com/in?key=s3cret#frag" });
		for (const part of [secret.subject, secret.html, secret.text]) {
			expect(part).not.toMatch(/pa55|s3cret|user:/);
		}
		expect(secret.text).toContain("the webhook endpoint https://hooks.example.com/in of");
		expect(validationFields(() => render("webhookDisabled", { endpointUrl: "ftp://hooks.example.com/in" }))).toEqual(["data.endpointUrl"]);
	});

	it("playbackReport: report and period in the subject, tenant, week, totals, top rows, button and CSV note in both parts", () => {
		const mail = render("playbackReport");
		expect(mail.subject).toBe("Proof of play: Lobby screens (23 Nov – 29 Nov 2026)");
		for (const part of [mail.html, mail.text]) {
			expect(part).toContain("Hello,");
			expect(part).toContain("Here is the proof-of-play report “Lobby screens” of “Acme Cinemas” on Marquee for the week 23 Nov – 29 Nov 2026.");
			expect(part).toContain("In total: 12,345 plays, 12 h 05 min of playing time.");
			expect(part).toContain("Most played content:");
			expect(part).toContain("The full table, with every content item, is attached as a CSV file.");
		}
		expect(mail.text).toContain(
			["- “Welcome loop”: 6,344 plays, 1 h 05 min", "- “Summer promo”: 6,000 plays, 6 h 00 min", "- “Menu board”: 1 play, under 1 min"].join("\n")
		);
		expect(mail.text).toContain("Open analytics:\nhttps://cms.example.com/analytics");
		expect(mail.text).not.toMatch(/<[a-z]/i);
		expect(mail.html).toContain('<li style="margin:0 0 4px;">“Welcome loop”: 6,344 plays, 1 h 05 min</li>');
		expect(mail.html).toContain('<li style="margin:0 0 4px;">“Summer promo”: 6,000 plays, 6 h 00 min</li>');
		expect(mail.html).toContain('<li style="margin:0 0 4px;">“Menu board”: 1 play, under 1 min</li>');
		expect(mail.html).toContain('href="https://cms.example.com/analytics"');
		expect(mail.html).toContain(">Open analytics</a>");
		// the rows in the order given (the most played first)
		expect(mail.text.indexOf("Welcome loop")).toBeLessThan(mail.text.indexOf("Summer promo"));
		expect(mail.text.indexOf("Summer promo")).toBeLessThan(mail.text.indexOf("Menu board"));
	});

	it("playbackReport: playing time in hours and minutes, to the nearest minute", () => {
		const total = (durationMs: number) => /In total: [^\n]*, (.*) of playing time\./.exec(render("playbackReport", { durationMs }).text)?.[1];
		expect(total(0)).toBe("0 h 00 min");
		expect(total(29_999)).toBe("under 1 min");
		expect(total(30_000)).toBe("0 h 01 min");
		expect(total(59 * 60_000 + 31_000)).toBe("1 h 00 min");
		expect(total(45 * 60_000)).toBe("0 h 45 min");
		expect(total(1_234 * 3_600_000 + 9 * 60_000)).toBe("1,234 h 09 min");
		expect(render("playbackReport", { plays: 1 }).text).toContain("In total: 1 play, 12 h 05 min of playing time.");
		expect(render("playbackReport", { plays: 0, durationMs: 0 }).text).toContain("In total: 0 plays, 0 h 00 min of playing time.");
	});

	it("playbackReport: a week without plays has no rows and says so", () => {
		const mail = render("playbackReport", { plays: 0, durationMs: 0, rows: [] });
		for (const part of [mail.html, mail.text]) {
			expect(part).toContain("Nothing was played this week.");
			expect(part).not.toContain("Most played content:");
		}
		expect(mail.html).not.toContain("<li");
		expect(mail.text).not.toMatch(/^- /m);
	});

	it("playbackReport: escapes names in the HTML, keeps them as text in the text part, one line in the subject", () => {
		const mail = render("playbackReport", {
			tenantName: "<img src=x onerror=alert(1)>",
			reportName: HOSTILE,
			rows: [{ name: HOSTILE, plays: 2, durationMs: 120_000 }, { name: "<b>bold</b>", plays: 1, durationMs: 60_000 }]
		});
		expect(mail.html).not.toContain("<script>");
		expect(mail.html).not.toContain("<img");
		expect(mail.html).not.toContain("<b>");
		expect(mail.html).toContain(`<li style="margin:0 0 4px;">“${HOSTILE_ESCAPED}”: 2 plays, 0 h 02 min</li>`);
		expect(mail.html).toContain("<li style=\"margin:0 0 4px;\">“&lt;b&gt;bold&lt;/b&gt;”: 1 play, 0 h 01 min</li>");
		expect(mail.html).toContain(`the proof-of-play report “${HOSTILE_ESCAPED}” of “&lt;img src=x onerror=alert(1)&gt;”`);
		expect(mail.html).toContain(`<title>Proof of play: ${HOSTILE_ESCAPED} (23 Nov – 29 Nov 2026)</title>`);
		expect(mail.text).toContain(`- “${HOSTILE}”: 2 plays, 0 h 02 min`);
		expect(mail.subject).toBe(`Proof of play: ${HOSTILE} (23 Nov – 29 Nov 2026)`);

		const injected = render("playbackReport", { reportName: "Lobby\r\nBcc: victim@example.com", period: "this\nweek" });
		expect(injected.subject).toBe("Proof of play: Lobby Bcc: victim@example.com (this week)");
		const long = render("playbackReport", { reportName: "🎬".repeat(70) });
		expect(long.subject).toBe(`Proof of play: ${"🎬".repeat(59)}… (23 Nov – 29 Nov 2026)`);
		expect(long.text).toContain(`the proof-of-play report “${"🎬".repeat(70)}”`);
		for (const name of WORLD_NAMES) {
			const world = render("playbackReport", { tenantName: name, rows: [{ name, plays: 3, durationMs: 180_000 }] });
			expect(world.html).toContain(`“${name}”: 3 plays, 0 h 03 min`);
			expect(world.text).toContain(`of “${name}” on Marquee`);
		}
	});

	it("playbackReport: keeps the first 20 rows of more, reading none of the rest; refuses more than 1000", () => {
		const rows = Array.from({ length: 25 }, (_, i) => ({ name: `Clip ${i + 1}`, plays: 100 - i, durationMs: 60_000 }));
		const parsed = parseEmailData("playbackReport", { ...SAMPLES.playbackReport, rows });
		expect(parsed.rows).toHaveLength(20);
		expect(parsed.rows[0]).toEqual({ name: "Clip 1", plays: 100, durationMs: 60_000 });
		expect(parsed.rows[19]).toEqual({ name: "Clip 20", plays: 81, durationMs: 60_000 });

		const mail = render("playbackReport", { rows });
		expect(mail.text).toContain("- “Clip 20”: 81 plays, 0 h 01 min\n\nOpen analytics:");
		expect(mail.text).not.toContain("Clip 21");
		expect(mail.html).not.toContain("Clip 21");
		expect(mail.html.match(/<li /g)).toHaveLength(20);

		// rows past the 20th are dropped unread, broken or not
		const broken = [...rows.slice(0, 20), 7, { name: "" }];
		expect(parseEmailData("playbackReport", { ...SAMPLES.playbackReport, rows: broken }).rows).toHaveLength(20);
		const tooMany = Array.from({ length: 1001 }, () => rows[0]);
		expect(validationFields(() => parseEmailData("playbackReport", { ...SAMPLES.playbackReport, rows: tooMany }))).toEqual(["data.rows"]);
	});

	it("playbackReport: names every missing or bad field, rows included, and drops unknown fields", () => {
		expect(validationFields(() => parseEmailData("playbackReport", { url: "https://cms.example.com/analytics" }))).toEqual([
			"data.durationMs",
			"data.period",
			"data.plays",
			"data.reportName",
			"data.rows",
			"data.tenantName"
		]);
		expect(
			validationFields(() =>
				parseEmailData("playbackReport", {
					...SAMPLES.playbackReport,
					plays: -1,
					durationMs: 1.5,
					rows: [SAMPLES.playbackReport.rows[0], { plays: "3", durationMs: 0 }, null],
					url: "javascript:alert(1)"
				})
			)
		).toEqual(["data.durationMs", "data.plays", "data.rows[1].name", "data.rows[1].plays", "data.rows[2]", "data.url"]);
		expect(validationFields(() => parseEmailData("playbackReport", { ...SAMPLES.playbackReport, rows: "all" }))).toEqual(["data.rows"]);
		expect(validationFields(() => parseEmailData("playbackReport", { ...SAMPLES.playbackReport, reportName: "x".repeat(201) }))).toEqual(["data.reportName"]);

		const extra = {
			...SAMPLES.playbackReport,
			attachments: [{ filename: "x.csv" }],
			rows: SAMPLES.playbackReport.rows.map(r => ({ ...r, contentId: "c-1", avgDurationMs: 5 })),
			to: "eve@evil.example"
		};
		expect(parseEmailData("playbackReport", extra)).toEqual(SAMPLES.playbackReport);
		expect(parseEmailData("playbackReport", { ...SAMPLES.playbackReport, reportName: "  Lobby\tscreens " }).reportName).toBe("Lobby screens");
	});

	it("escapes hostile names in every alert template and keeps non-Latin and emoji names intact", () => {
		const withName = (template: EmailTemplate, display: string, person: string, tenant: string): EmailData[EmailTemplate] => {
			const sample = SAMPLES[template] as unknown as Record<string, unknown>;
			const data: Record<string, unknown> = { ...sample, name: person, tenantName: tenant };
			if ("display" in sample) data.display = { ...LOBBY, name: display };
			if ("displays" in sample) data.displays = [{ ...LOBBY, name: display }];
			if ("count" in sample) data.count = 1;
			return data as unknown as EmailData[EmailTemplate];
		};
		const alerts: EmailTemplate[] = ["displayOffline", "displayOnline", "offlineDigest", "quotaWarning", "paymentFailed", "webhookDisabled"];
		for (const template of alerts) {
			const mail = renderEmail(template, withName(template, HOSTILE, HOSTILE, `<img src=x onerror=alert(1)>`));
			expect(mail.html).not.toContain("<script>");
			expect(mail.html).not.toContain("<img");
			expect(mail.html).toContain(`Hi ${HOSTILE_ESCAPED},`);
			expect(mail.html).toContain("“&lt;img src=x onerror=alert(1)&gt;”");
			expect(mail.text).toContain(`Hi ${HOSTILE},`);
			expect(mail.subject).not.toMatch(/[\r\n]/);

			for (const name of WORLD_NAMES) {
				const world = renderEmail(template, withName(template, name, name, name));
				expect(world.html).toContain(`Hi ${name},`);
				expect(world.text).toContain(`Hi ${name},`);
				expect(world.text).toContain(`“${name}”`);
				expect(world.html).toContain(`“${name}”`);
			}
		}
		expect(render("displayOffline", { display: { ...LOBBY, name: "📺 Lobby 👩‍💻" } }).subject).toBe("Display “📺 Lobby 👩‍💻” is offline");
		expect(render("displayOffline", { display: { ...LOBBY, name: "东京" } }).subject).toBe("Display “东京” is offline");
		expect(render("displayOnline", { display: { ...LOBBY, name: HOSTILE } }).html).toContain(`<title>Display “${HOSTILE_ESCAPED}” is back online</title>`);
	});

	it("cuts a long display name in the subject (by characters, never inside an emoji) and keeps it whole in the body", () => {
		const long = `${"🎬".repeat(70)}`;
		const mail = render("displayOffline", { display: { ...LOBBY, name: long } });
		expect(mail.subject).toBe(`Display “${"🎬".repeat(59)}…” is offline`);
		expect(mail.text).toContain(`The display “${long}”`);
		const injected = render("displayOffline", { display: { ...LOBBY, name: "Lobby\r\nBcc: victim@example.com" } });
		expect(injected.subject).toBe("Display “Lobby Bcc: victim@example.com” is offline");
	});

	it("names nested and listed fields of the alert data", () => {
		expect(validationFields(() => parseEmailData("displayOffline", { ...SAMPLES.displayOffline, display: undefined }))).toEqual(["data.display"]);
		expect(validationFields(() => parseEmailData("displayOffline", { ...SAMPLES.displayOffline, display: "Lobby" }))).toEqual(["data.display"]);
		expect(validationFields(() => parseEmailData("displayOnline", { ...SAMPLES.displayOnline, display: { displayId: "d-1", lastSeenAt: "yesterday" } }))).toEqual([
			"data.display.lastSeenAt",
			"data.display.name"
		]);
		expect(validationFields(() => parseEmailData("displayOffline", { ...SAMPLES.displayOffline, offlineMinutes: -1 }))).toEqual(["data.offlineMinutes"]);
		expect(
			validationFields(() => parseEmailData("offlineDigest", { ...SAMPLES.offlineDigest, displays: [LOBBY, { name: "x", lastSeenAt: null }, 7], count: 3 }))
		).toEqual(["data.displays[1].displayId", "data.displays[2]"]);
		expect(validationFields(() => parseEmailData("offlineDigest", { ...SAMPLES.offlineDigest, displays: [] }))).toEqual(["data.displays"]);
		// the count covers at least the displays listed
		expect(validationFields(() => parseEmailData("offlineDigest", { ...SAMPLES.offlineDigest, count: 2 }))).toEqual(["data.count"]);
		expect(validationFields(() => parseEmailData("quotaWarning", { ...SAMPLES.quotaWarning, resource: "cpu", limit: 0 }))).toEqual(["data.limit", "data.resource"]);
		expect(validationFields(() => parseEmailData("paymentFailed", { url: "https://x.example" }))).toEqual(["data.amountDue", "data.name", "data.tenantName"]);
		expect(validationFields(() => parseEmailData("webhookDisabled", { ...SAMPLES.webhookDisabled, reason: "", url: "javascript:alert(1)" }))).toEqual([
			"data.reason",
			"data.url"
		]);
	});

	it("parses alert data to what the contract says, dropping unknown fields", () => {
		expect(parseEmailData("displayOffline", { ...SAMPLES.displayOffline, display: { ...LOBBY, token: "x" }, extra: 1 })).toEqual(SAMPLES.displayOffline);
		expect(parseEmailData("offlineDigest", SAMPLES.offlineDigest)).toEqual(SAMPLES.offlineDigest);
		expect(parseEmailData("displayOffline", { ...SAMPLES.displayOffline, display: { displayId: "d-1", name: "A" } }).display).toEqual({ displayId: "d-1", name: "A", lastSeenAt: null });
	});

	it("renders every template as a complete HTML document with inline styles only", () => {
		for (const template of EMAIL_TEMPLATES) {
			const { html } = render(template);
			expect(html.startsWith("<!DOCTYPE html>")).toBe(true);
			expect(html).toContain("</html>");
			expect(html).not.toMatch(/<style|<script|<link/i);
		}
	});

	it("escapes every interpolated value in the HTML", () => {
		const evil = `<script>alert("x")</script> & 'co'`;
		const escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;co&#39;";
		const verify = render("verify", { name: evil });
		expect(verify.html).not.toContain("<script>");
		expect(verify.html).toContain(escaped);
		expect(verify.text).toContain(evil);

		const invitation = render("invitation", { inviterName: evil, tenantName: `<img src=x onerror=alert(1)>` });
		expect(invitation.html).not.toContain("<script>");
		expect(invitation.html).not.toContain("<img");
		expect(invitation.html).toContain("&lt;img src=x onerror=alert(1)&gt;");
		// the <title> carries the subject, which holds no names
		expect(invitation.html).toContain("<title>You are invited to join an organisation on Marquee</title>");

		const quoted = render("verify", { url: `https://example.com/a?b="onmouseover=alert(1)` });
		expect(quoted.html).not.toContain(`"onmouseover`);
	});

	it("refuses links that are not http(s)", () => {
		for (const url of ["javascript:alert(1)", "JavaScript:alert(1)", " javascript:alert(1)", "data:text/html,<b>x</b>", "vbscript:x", "/relative/path", "ftp://example.com/x", "not a url"]) {
			expect(validationFields(() => render("verify", { url }))).toEqual(["data.url"]);
		}
		expect(safeUrl("javascript:alert(1)")).toBeNull();
		expect(safeUrl("http://localhost:3000/verify?token=x")).toBe("http://localhost:3000/verify?token=x");
	});

	it("names every missing or bad field, per template", () => {
		expect(validationFields(() => parseEmailData("verify", {}))).toEqual(["data.name", "data.url"]);
		expect(validationFields(() => parseEmailData("reset", { name: "A", url: "https://x.example" }))).toEqual(["data.expiresInMinutes"]);
		expect(validationFields(() => parseEmailData("reset", { name: "A", url: "https://x.example", expiresInMinutes: 1.5 }))).toEqual([
			"data.expiresInMinutes"
		]);
		expect(validationFields(() => parseEmailData("invitation", { url: "https://x.example" }))).toEqual([
			"data.expiresAt",
			"data.inviterName",
			"data.role",
			"data.tenantName"
		]);
		expect(
			validationFields(() => parseEmailData("invitation", { ...SAMPLES.invitation, role: "superuser", expiresAt: "soon", tenantName: "   " }))
		).toEqual(["data.expiresAt", "data.role", "data.tenantName"]);
		expect(validationFields(() => parseEmailData("verify", { name: 42, url: "https://x.example" }))).toEqual(["data.name"]);
		expect(validationFields(() => parseEmailData("verify", null))).toEqual(["data"]);
		expect(validationFields(() => parseEmailData("nope" as EmailTemplate, {}))).toEqual(["template"]);
	});

	it("never echoes a rejected value (a link carries a token)", () => {
		try {
			parseEmailData("verify", { name: "A", url: "javascript:steal('secret-token')" });
			throw new Error("expected a validation error");
		} catch (err) {
			expect(JSON.stringify((err as AppError).data)).not.toContain("secret-token");
			expect((err as AppError).message).not.toContain("secret-token");
		}
	});

	it("drops unknown fields and keeps names on one line (no header injection in the subject)", () => {
		const data = parseEmailData("verify", { name: "Ada", url: "https://x.example/v", tenantId: "t-1" });
		expect(data).toEqual({ name: "Ada", url: "https://x.example/v" });

		const mail = render("invitation", { inviterName: "Eve\r\nBcc: victim@example.com", tenantName: "Acme\u202e\n" });
		expect(mail.subject).toBe("You are invited to join an organisation on Marquee");
		expect(mail.text).toContain("“Eve Bcc: victim@example.com” has invited you to join the organisation “Acme”");
		expect(mail.text).not.toContain("\u202e");
	});

	it("accepts only one plain recipient address", () => {
		expect(isSingleAddress("ada@example.com")).toBe(true);
		expect(isSingleAddress("ada+signage@mail.example.co.uk")).toBe(true);
		for (const bad of ["ada@example.com,eve@evil.example", `"a,b"@example.com`, "Ada <ada@example.com>", "ada@example.com\r\nBcc: x@y.z", "ada@localhost", "ada"]) {
			expect(isSingleAddress(bad)).toBe(false);
		}
	});
});
