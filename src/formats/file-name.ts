// Format characters (bidi controls and isolates, zero-width spaces and joiners, the BOM, tags),
// line and paragraph separators, and letters that print as nothing (Hangul fillers).
const INVISIBLE = /[\p{Cf}\p{Zl}\p{Zp}\u115f\u1160\u3164\uffa0]/gu;

/**
 * A file name as Intake stores and shows it (the job's `file_name`, in the API, the console, the
 * CLI and webhooks): at most 255 characters (the column's size), well-formed, control characters
 * (a NUL PostgreSQL cannot store, escape sequences that would reach a terminal) replaced by
 * U+FFFD, and characters that reorder or hide text written out as `\u{202e}`: a right-to-left
 * override would show `invoice‮txt.exe` as `invoiceexe.txt`, a zero-width space makes two names
 * look the same.
 */
export function shownFileName(name: string): string {
  return name
    .toWellFormed()
    .replace(/[\u0000-\u001f\u007f-\u009f]/g, '\ufffd')
    .replace(INVISIBLE, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`)
    .slice(0, 255)
    .toWellFormed();
}
