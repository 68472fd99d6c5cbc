import type { DocumentNode } from 'graphql';

/**
 * Parsed documents by their text, for the transports that hand the pipeline text (graphql-ws,
 * SSE, multipart; Apollo has its own document store). Clients send the same few documents again
 * and again: one parse per text, and since validation and pricing are remembered per document
 * (pipeline.ts, limits.ts), one validation and one pricing too.
 *
 * Bounded by the total length of the texts kept, so that a client sending ever new documents
 * cannot grow it without end: the least recently used go first. Only documents that parsed are
 * kept; one that failed is parsed again, which costs what it always did.
 */
export class DocumentCache {
  private readonly documents = new Map<string, DocumentNode>();
  private length = 0;

  constructor(private readonly maxLength: number) {}

  get(text: string): DocumentNode | undefined {
    const document = this.documents.get(text);
    if (document) {
      // Most recently used last: Map keeps insertion order.
      this.documents.delete(text);
      this.documents.set(text, document);
    }
    return document;
  }

  set(text: string, document: DocumentNode): void {
    if (text.length > this.maxLength || this.documents.has(text)) return;
    this.documents.set(text, document);
    this.length += text.length;
    for (const [oldest] of this.documents) {
      if (this.length <= this.maxLength) break;
      this.documents.delete(oldest);
      this.length -= oldest.length;
    }
  }

  get size(): number {
    return this.documents.size;
  }
}
