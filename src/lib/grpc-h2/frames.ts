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
 * of that chunk (no copy); one spread over several chunks is copied, chunk by chunk as they arrive, into a
 * buffer of its length (within the limit: the pages of the buffer become resident as the bytes arrive), so
 * no chunk is kept: a 19 MiB message costs 19 MiB, not its chunks and their join. After an error every
 * further byte is ignored.
 */
export class MessageReader {
  private readonly head = Buffer.alloc(5);
  private headLength = 0;
  /** Length of the message being read; -1 while its prefix is incomplete. */
  private length = -1;
  /** The message being assembled (allocated at its first partial chunk). */
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
      const n = Math.min(want, c.length);
      this.buf ??= Buffer.allocUnsafe(this.length);
      c.copy(this.buf, this.got, 0, n);
      this.got += n;
      c = c.subarray(n);
      if (this.got === this.length) this.complete(this.buf);
    }
    return this.failed;
  }

  private complete(msg: Buffer): void {
    this.headLength = 0;
    this.length = -1;
    this.buf = undefined;
    this.got = 0;
    this.onMessage(msg);
  }
}
