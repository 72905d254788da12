/**
 * What the window shows for a manifest, and whether it shows anything at all:
 *
 * - no layout: one full-window loop of the manifest's items (playback.ts), as players always did;
 * - a layout: its frame, as large as fits at its own ratio and centred (black bars around it),
 *   with its background colour and image, and one box per zone at its place (in fractions of
 *   the frame, model.ts zoneStyle), each playing its own loop. A zone whose etag did not change
 *   across manifests goes on untouched; the others follow playback.ts's rules;
 * - power off: a black layer over everything, every loop stopped (nothing plays, nothing is
 *   recorded); power on again starts every loop from its beginning.
 *
 * The DOM says what is on screen, for tests and support staff: the body's `data-power`
 * ("on" | "off") and `data-content-id` (the single loop's or the layout's main zone's item),
 * each zone's `data-zone-id` and `data-content-id`, the frame's `data-layout-id` and
 * `data-background-id` (once the background image shows).
 */
import { isReady, objectUrl } from "./content-cache.js";
import { layoutColor, mainZoneId, manifestProgramme, zoneProgramme, zoneStyle, type Manifest, type ManifestItem, type ManifestLayout, type ManifestZone, type PlayRecord } from "./model.js";
import { Playback } from "./playback.js";

export interface ScreenOptions {
	/** Now, by the server's clock (play records use it). */
	now(): number;
	onPlayed(play: PlayRecord): void;
}

interface Zone {
	element: HTMLElement;
	playback: Playback;
}

export class Screen {
	private manifest: Manifest | null = null;
	private on = true;
	/** The full-window loop (no layout). */
	private single: Playback | null = null;
	/** The layout's frame, its zones by id, and which of them is the main one. */
	private frame: HTMLElement | null = null;
	private readonly zones = new Map<string, Zone>();
	private mainId: string | null = null;
	/** The background image wanted, and whether it shows (once its file is cached). */
	private background: { item: ManifestItem; shown: boolean } | null = null;
	private readonly blank: HTMLElement;

	constructor(
		private readonly stage: HTMLElement,
		private readonly options: ScreenOptions
	) {
		this.blank = document.createElement("div");
		this.blank.id = "blank";
		this.blank.hidden = true;
		document.body.append(this.blank);
		document.body.dataset.power = "on";
	}

	/** The etag of the manifest held (played, or waiting for the power to come on). */
	get etag(): string | null {
		return this.manifest?.etag ?? null;
	}

	/** Whether the screen is on. */
	get powered(): boolean {
		return this.on;
	}

	/** The main content on screen, for heartbeats. */
	get currentContentId(): string | null {
		if (this.single) return this.single.currentContentId;
		return (this.mainId && this.zones.get(this.mainId)?.playback.currentContentId) ?? null;
	}

	/** Shows `manifest` with the power `on` or off. */
	show(manifest: Manifest, on: boolean): void {
		this.manifest = manifest;
		if (on !== this.on) this.power(on);
		if (on) this.render();
	}

	/** Turns the screen on (every loop from its beginning) or off (blank, nothing plays). */
	setPower(on: boolean): void {
		if (on === this.on) return;
		this.power(on);
		if (on) this.render();
	}

	/** A file was downloaded: loops waiting for it start, the background appears. */
	kick(): void {
		if (!this.on) return;
		this.single?.kick();
		for (const z of this.zones.values()) z.playback.kick();
		this.showBackground();
	}

	/** Stops everything and forgets the manifest (sign-out); the power is on again (pairing shows). */
	stop(): void {
		this.manifest = null;
		this.clear();
		if (!this.on) this.power(true);
	}

	private power(on: boolean): void {
		this.on = on;
		document.body.dataset.power = on ? "on" : "off";
		this.blank.hidden = on;
		if (!on) this.clear();
	}

	private render(): void {
		const manifest = this.manifest;
		if (!manifest) return;
		if (manifest.layout) return this.renderLayout(manifest, manifest.layout);
		if (this.frame) this.clear();
		this.single ??= new Playback(this.stage, { ...this.options, mark: markBody });
		this.single.play(manifestProgramme(manifest));
	}

	private renderLayout(manifest: Manifest, layout: ManifestLayout): void {
		if (this.single) this.clear();
		let frame = this.frame;
		if (!frame) {
			frame = this.frame = document.createElement("div");
			frame.className = "frame";
			this.stage.replaceChildren(frame);
		}
		frame.dataset.layoutId = layout.id;
		// Custom properties and CSSOM styles (not style attributes): the page's CSP allows these.
		frame.style.setProperty("--frame-width", String(layout.width));
		frame.style.setProperty("--frame-height", String(layout.height));
		frame.style.backgroundColor = layoutColor(layout);
		this.setBackground(layout.background);

		this.mainId = mainZoneId(manifest);
		const wanted = new Set(layout.zones.map(z => z.id));
		for (const [id, z] of this.zones) {
			if (wanted.has(id)) continue;
			z.playback.stop();
			z.element.remove();
			this.zones.delete(id);
		}
		for (const zone of layout.zones) {
			let z = this.zones.get(zone.id);
			if (!z) {
				const element = document.createElement("div");
				element.className = "zone";
				element.dataset.zoneId = zone.id;
				const id = zone.id;
				const playback = new Playback(element, { ...this.options, mark: contentId => this.markZone(id, contentId) });
				z = { element, playback };
				this.zones.set(zone.id, z);
			}
			Object.assign(z.element.style, zoneStyle(zone));
			z.element.classList.toggle("main", zone.id === this.mainId);
		}
		this.orderZones(frame, layout.zones);
		for (const zone of layout.zones) this.zones.get(zone.id)?.playback.play(zoneProgramme(manifest, zone));
		markBody(this.currentContentId);
	}

	/**
	 * Puts the zones' elements in drawing order (zones of the same zIndex draw in that order):
	 * new ones are added, the others moved only when the order changed, since moving an element
	 * reloads the web page it shows.
	 */
	private orderZones(frame: HTMLElement, zones: readonly ManifestZone[]): void {
		const elements = zones.map(zone => this.zones.get(zone.id)?.element).filter((el): el is HTMLElement => el !== undefined);
		for (const el of elements) if (el.parentElement !== frame) frame.append(el);
		const present = Array.from(frame.children);
		if (present.length !== elements.length || present.some((el, i) => el !== elements[i])) frame.append(...elements);
	}

	private markZone(zoneId: string, contentId: string | null): void {
		const element = this.zones.get(zoneId)?.element;
		if (element) {
			if (contentId) element.dataset.contentId = contentId;
			else delete element.dataset.contentId;
		}
		if (zoneId === this.mainId) markBody(contentId);
	}

	private setBackground(item: ManifestItem | null): void {
		const wanted = this.background;
		if (wanted && item && wanted.item.sha256 === item.sha256) return;
		if (this.frame) {
			this.frame.style.backgroundImage = "";
			delete this.frame.dataset.backgroundId;
		}
		this.background = item ? { item, shown: false } : null;
		this.showBackground();
	}

	/**
	 * Shows the background image once its file is cached: as the frame's own background, so that
	 * it is under every zone whatever their zIndex, and covers the frame (cropped if need be).
	 */
	private showBackground(): void {
		const background = this.background;
		if (!background || background.shown || !isReady(background.item)) return;
		void objectUrl(background.item).then(url => {
			const frame = this.frame;
			if (!url || !frame || this.background !== background || background.shown) return;
			background.shown = true;
			frame.style.backgroundImage = `url("${url}")`;
			frame.dataset.backgroundId = background.item.contentId;
		});
	}

	/** Stops every loop (their plays are recorded) and empties the stage. */
	private clear(): void {
		this.single?.stop();
		this.single = null;
		for (const z of this.zones.values()) z.playback.stop();
		this.zones.clear();
		this.mainId = null;
		this.frame = null;
		this.background = null;
		this.stage.replaceChildren();
		markBody(null);
	}
}

function markBody(contentId: string | null): void {
	if (contentId) document.body.dataset.contentId = contentId;
	else delete document.body.dataset.contentId;
}
