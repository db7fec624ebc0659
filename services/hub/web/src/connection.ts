// The hub's feed: authenticate in the first message, resume with since/epoch, back off.
import type { Frame } from "./model";

export type Status = "connecting" | "live" | "reconnecting" | "unauthorized";

export interface FeedOptions {
  token: string;
  position: () => { seq: number | null; epoch: string | null };
  onFrame: (frame: Frame) => boolean; // false: the frame did not follow; start over
  onStatus: (status: Status, detail?: string) => void;
}

const MIN_DELAY_MS = 250;
const MAX_DELAY_MS = 5000;

export class Feed {
  private socket: WebSocket | null = null;
  private delay = MIN_DELAY_MS;
  private stopped = false;
  private forceSnapshot = false;
  reconnects = 0;

  constructor(private readonly options: FeedOptions) {}

  start(): void {
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.socket?.close();
  }

  private url(): string {
    const base = new URL("ws", location.href);
    base.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    const { seq, epoch } = this.options.position();
    if (seq !== null && epoch !== null && !this.forceSnapshot) {
      base.searchParams.set("since", String(seq));
      base.searchParams.set("epoch", epoch);
    }
    this.forceSnapshot = false;
    return base.toString();
  }

  private connect(): void {
    // The token goes in the first message, never in the URL servers and proxies log.
    const socket = new WebSocket(this.url());
    this.socket = socket;
    socket.onopen = () => socket.send(JSON.stringify({ type: "auth", token: this.options.token }));
    socket.onmessage = (event) => {
      const frame = JSON.parse(String(event.data)) as Frame;
      if (frame.type === "error") {
        if (frame.field === "token") this.options.onStatus("unauthorized", frame.message);
        return;
      }
      this.delay = MIN_DELAY_MS;
      this.options.onStatus("live");
      if (!this.options.onFrame(frame)) {
        this.forceSnapshot = true; // a gap: take a fresh snapshot rather than guess
        socket.close();
      }
    };
    socket.onclose = (event) => {
      if (this.stopped) return;
      if (event.code === 4401) {
        this.options.onStatus("unauthorized", event.reason);
        return;
      }
      this.reconnects += 1;
      this.options.onStatus("reconnecting", `reconnecting in ${(this.delay / 1000).toFixed(1)} s`);
      const wait = this.delay * (0.75 + Math.random() * 0.5);
      this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
      window.setTimeout(() => this.connect(), wait);
    };
  }
}
