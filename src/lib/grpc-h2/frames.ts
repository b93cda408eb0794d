// gRPC's length-prefixed messages on an HTTP/2 stream: a 1-byte compressed flag, a 4-byte big-endian length,
// then the message. Pure: bytes in, messages (or one error) out. The bytes come from a peer, so a message
// is accepted only up to a limit, and only uncompressed (the agent never negotiates compression).
import { Code, type CallStatus } from './status.js';

/** The 5-byte prefix of an uncompressed message of `length` bytes. */
export function messagePrefix(length: number): Buffer {
  const head = Buffer.allocUnsafe(5);
  head[0] = 0;
  head.writeUInt32BE(length, 1);
  return head;
}

/**
 * Splits a stream of DATA bytes into messages. A message that arrives in one chunk is handed out as a view
 * of that chunk (no copy). One spread over several chunks is kept as its chunks until a quarter of it has
 * arrived; then a buffer of its length is allocated, the chunks so far are copied in and dropped, and each
 * later chunk is copied in as it arrives. So a 19 MiB message costs 19 MiB plus its first quarter, not its
 * chunks and their join (38 MiB), and a peer must send a quarter of the length it announces before the
 * whole length is allocated. After an error every further byte is ignored.
 */
export class MessageReader {
  private readonly head = Buffer.alloc(5);
  private headLength = 0;
  /** Length of the message being read; -1 while its prefix is incomplete. */
  private length = -1;
  /** The chunks of the message being read, until its buffer is allocated. */
  private parts: Buffer[] = [];
  /** The message being assembled, once a quarter of it has arrived. */
  private buf: Buffer | undefined;
  private got = 0;
  private failed: CallStatus | undefined;

  constructor(
    /** The largest message accepted. */
    private readonly maxBytes: number,
    private readonly onMessage: (message: Buffer) => void,
  ) {}

  /** Bytes of a message not complete yet (buffered). */
  get pendingBytes(): number {
    return this.headLength + this.got;
  }

  get error(): CallStatus | undefined {
    return this.failed;
  }

  /** Feeds DATA bytes; returns the error that ended reading (then and on every later call), else undefined. */
  push(chunk: Buffer): CallStatus | undefined {
    let c = chunk;
    while (c.length > 0 && !this.failed) {
      if (this.length < 0) {
        const take = Math.min(5 - this.headLength, c.length);
        c.copy(this.head, this.headLength, 0, take);
        this.headLength += take;
        c = c.subarray(take);
        if (this.headLength < 5) break;
        const flag = this.head[0]!;
        const length = this.head.readUInt32BE(1);
        if (flag === 1) {
          this.failed = { code: Code.INTERNAL, details: 'compressed message received, but the stream negotiated no compression' };
          break;
        }
        if (flag !== 0) {
          this.failed = { code: Code.INTERNAL, details: `received a message with an unknown payload format ${flag}` };
          break;
        }
        if (length > this.maxBytes) {
          this.failed = { code: Code.RESOURCE_EXHAUSTED, details: `Received message larger than max (${length} vs. ${this.maxBytes})` };
          break;
        }
        this.length = length;
        if (length === 0) {
          this.complete(Buffer.alloc(0));
          continue;
        }
      }
      const want = this.length - this.got;
      if (this.got === 0 && c.length >= want) {
        // the whole message in this chunk: hand out a view
        const msg = c.subarray(0, want);
        c = c.subarray(want);
        this.complete(msg);
        continue;
      }
      if (c.length === 0) break;
      const part = c.subarray(0, want);
      c = c.subarray(part.length);
      if (this.buf) part.copy(this.buf, this.got);
      else this.parts.push(part);
      this.got += part.length;
      if (this.got === this.length) {
        this.complete(this.buf ?? Buffer.concat(this.parts, this.length));
      } else if (!this.buf && this.got * 4 >= this.length) {
        this.buf = Buffer.allocUnsafe(this.length);
        let at = 0;
        for (const p of this.parts) at += p.copy(this.buf, at);
        this.parts = [];
      }
    }
    return this.failed;
  }

  private complete(msg: Buffer): void {
    this.headLength = 0;
    this.length = -1;
    this.parts = [];
    this.buf = undefined;
    this.got = 0;
    this.onMessage(msg);
  }
}
