/**
 * Whether a name is text a person can see. A name is shown to operators, printed in e-mail
 * subjects and greetings and sent to every consumer of the events, so it must read as what it
 * is: no character that reorders (U+202E turns "Eve‮gnp.exe" into "Eveexe.png"), hides
 * (U+200B, U+2060) or breaks lines (U+2028 in a subject line starts a new header for some
 * mail clients), and not only characters that draw nothing (U+3164, a Hangul filler, looks
 * like a blank name yet survives trimming).
 */

/**
 * Controls, format characters (bidi controls, zero-width characters, the soft hyphen, tags),
 * line and paragraph separators, surrogates and noncharacters. ZWJ and ZWNJ are format
 * characters that scripts and emoji need; they are allowed between two visible characters only
 * (JOINER_IN_CONTEXT), and an emoji tag sequence (a subdivision flag) as a whole (TAG_SEQUENCE).
 */
const REFUSED = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}\p{Noncharacter_Code_Point}]/u;

/** A subdivision flag: black flag, tag letters, cancel tag (🏴 + "gbsct" + U+E007F). */
const TAG_SEQUENCE = /\u{1F3F4}[\u{E0020}-\u{E007E}]+\u{E007F}/gu;

/**
 * ZWNJ (Persian "می‌خواهم") and ZWJ (Sinhala, Malayalam, 👩‍💻) between two characters that are
 * not themselves spaces or format characters: where they join or keep apart what is there.
 */
const JOINER_IN_CONTEXT =
  /(?<=[^\p{White_Space}\p{Cc}\p{Cf}\p{Zl}\p{Zp}])[\u200C\u200D](?=[^\p{White_Space}\p{Cc}\p{Cf}\p{Zl}\p{Zp}])/gu;

/**
 * What draws nothing on its own: white space, default-ignorable code points (the Hangul fillers
 * U+115F, U+1160, U+3164 and U+FFA0 among them, variation selectors), combining marks with no
 * base, the blank Braille pattern.
 */
const INVISIBLE = /[\p{White_Space}\p{Default_Ignorable_Code_Point}\p{M}\u2800]/gu;

const codePoint = (character: string): string =>
  `U+${(character.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;

/** Why `text` is not a visible name, as a sentence for the client; undefined when it is one. */
export function invisibleTextProblem(text: string, what = 'Name'): string | undefined {
  const rest = text.replace(TAG_SEQUENCE, '🏴').replace(JOINER_IN_CONTEXT, '');
  const refused = REFUSED.exec(rest)?.[0];
  if (refused !== undefined) {
    return `${what} must not contain ${codePoint(refused)} (control, format, bidi, zero-width and line or paragraph separator characters are refused)`;
  }
  if (rest.replace(INVISIBLE, '') === '') {
    return `${what} must contain a visible character`;
  }
  return undefined;
}
