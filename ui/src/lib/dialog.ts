// A native modal <dialog> shown while a flag says so: the handlers that clear the flag when
// the person closes it (Escape, or a form's `method="dialog"`).

/**
 * `oncancel` and `onclose` handlers that call `closed` when the dialog is closed by the
 * person. Escape's `cancel` comes at once; the `close` that follows comes later, as a task of
 * its own, and counts only while the dialog is shut: if it was opened again in between
 * (Escape, then Enter on the button that opens it), that late event must not shut it.
 */
export function closedBy(dialog: () => HTMLDialogElement | undefined, closed: () => void) {
  return {
    oncancel: () => closed(),
    onclose: () => {
      if (!dialog()?.open) closed();
    },
  };
}
