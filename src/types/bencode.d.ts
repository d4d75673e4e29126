// The `bencode` package (v4) ships no types. Decoded strings are Uint8Array unless an
// encoding is given; dictionaries are plain objects; integers are numbers.
declare module 'bencode' {
  interface Decode {
    (data: Uint8Array, start?: number, end?: number, encoding?: string): any
    (data: Uint8Array, encoding?: string): any
    /** Offset just past the last value decoded (library state, reset on every call). */
    position: number
  }
  interface Encode {
    (data: unknown): Uint8Array
    (data: unknown, buffer: Uint8Array, offset?: number): Uint8Array
    bytes: number
  }
  const bencode: {
    encode: Encode
    decode: Decode
    byteLength(value: unknown): number
    encodingLength(value: unknown): number
  }
  export default bencode
}
