import type { Socket } from 'node:net';
import { ERROR_TABLE, type ErrorCode } from '../errors.js';
import { newRequestId } from './plugins/errors.js';

/** What Node's HTTP server reports before a request reaches Fastify, and the answer each gets. */
const CLIENT_ERRORS: Record<string, { code: ErrorCode; message: string; hint: string }> = {
  ERR_HTTP_REQUEST_TIMEOUT: {
    code: 'REQUEST_TIMEOUT',
    message: 'The request did not arrive in time (see HEADERS_TIMEOUT_MS and REQUEST_TIMEOUT_MS)',
    hint: 'Send the whole request promptly; open the connection when you are ready to send.',
  },
};

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' };

/**
 * Fastify's clientErrorHandler: the HTTP parser or Node's timeouts refused the request
 * before any route ran (raw non-ASCII in the URL, a stalled client, ...). The answer is
 * still the envelope, and the connection is closed.
 */
export function clientErrorHandler(error: Error & { code?: string }, socket: Socket): void {
  // As Node's own handler: once an answer has gone out on this connection (the body is
  // still trickling in after an early 401, say), a second answer would corrupt the stream.
  const raw = socket as Socket & { _httpMessage?: { headersSent?: boolean } | null; parser?: { incoming?: { complete?: boolean } | null } | null };
  // A request still arriving with no response pending: its response has gone out already.
  const answered = raw._httpMessage ? raw._httpMessage.headersSent : Boolean(raw.parser?.incoming && !raw.parser.incoming.complete);
  if (!socket.writable || answered) {
    socket.destroy();
    return;
  }
  const known = error.code ? CLIENT_ERRORS[error.code] : undefined;
  const code = known?.code ?? 'VALIDATION_ERROR';
  const status = ERROR_TABLE[code].status;
  const body = JSON.stringify({
    success: false,
    error: {
      code,
      message: known?.message ?? `Malformed HTTP request: ${error.code ?? 'bad request'}`,
      hint: known?.hint ?? 'Percent-encode the URL and check the headers.',
      requestId: newRequestId(),
    },
  });
  socket.end(`HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}
