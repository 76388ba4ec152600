"""User mistakes: the one exception type for them, and their translation into one short line.

Every command prints a refused input as ``error: <line>`` and exits with status 2. The line starts
with the option as the user typed it (``--data.seq_len: expected an integer, got 1.5``), says what was
given and what is accepted, and stays short: :func:`one_line` turns jsonargparse's nested reports
(hundreds of characters about Union subtypes and class paths) and Lightning's or torch's messages
into that form. ``BIGRU_DEBUG=1`` shows the original traceback instead.
"""

from __future__ import annotations

import inspect
import re
import sys

# Exceptions of libraries that also mean "the user's mistake"; looked up only once their module is loaded
# (an exception of a module never imported cannot have been raised), so this module stays light to import.
USER_ERROR_TYPES = (
    ("lightning.fabric.utilities.exceptions", "MisconfigurationException"),
    ("jsonargparse", "ArgumentError"),
)

MAX_LINE = 160  # characters of the message after "error: "
LIST_BUDGET = 70  # characters of a list of accepted values; longer lists end with ", ..."
CLASS_GROUPS = {  # option -> (what it names, examples, where any class may come from)
    "data": ("data module", "GaussianDataModule, FileDataModule", "or a dotted path"),
    "optimizer": ("optimizer", "Adam, AdamW, SGD", "any torch.optim class or a dotted path"),
    "lr_scheduler": ("scheduler", "StepLR, CosineAnnealingLR, ReduceLROnPlateau", "any torch.optim.lr_scheduler class"),
}
TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "NoneType": "null",
    "dict": "a mapping",
    "list": "a list",
}
# torch.optim's own checks ("Invalid learning rate: -1.0") and the option each one is about
TORCH_OPTIM_VALUES = {"learning rate": "lr", "epsilon value": "eps", "weight_decay value": "weight_decay"}


class UserInputError(ValueError):
    """A bad parameter value, file or combination of settings, explained in one line.

    The command-line entry points print its message (no traceback) and exit with status 2.
    Messages name the parameter or file first and say what is accepted.
    """


def find_user_error(error: BaseException) -> BaseException | None:
    """The user's mistake behind ``error`` (following its causes), or None for a genuine failure."""
    kinds: list[type[BaseException]] = [UserInputError]
    kinds += [getattr(sys.modules[module], name) for module, name in USER_ERROR_TYPES if module in sys.modules]
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, tuple(kinds)):
            return current
        current = current.__cause__ or current.__context__
    return None


def one_line(error: BaseException) -> str:
    """``error``'s message as one short line that starts with the option it is about."""
    text = " ".join(str(error).split())
    keyed = re.match(r'Parser key "([^"]+)": ?(.*)', text)
    if keyed:
        text = _translate(keyed.group(1), keyed.group(2))
    elif text.startswith("--"):
        option, _, rest = text.partition(": ")
        text = _translate(option[2:], rest) if rest and " " not in option else text
    else:
        text = _lead_with_option(text)
    return _shorten(text)


def _translate(key: str, text: str) -> str:
    """One line for jsonargparse's report ``text`` about option ``--key``."""
    nested = re.search(r"Problem with given class_path '([\w.]+)': (.*)", text)
    if nested:
        return _nested(key, nested.group(1).rsplit(".", 1)[-1], nested.group(2))
    unknown_class = re.search(r"Expected a dot import path string: (\S+)", text)
    if unknown_class and key in CLASS_GROUPS:
        kind, examples, anything = CLASS_GROUPS[key]
        return f"--{key}: unknown {kind} {unknown_class.group(1)}; e.g. {examples} ({anything})"
    if key == "model" and "Unable to load config" in text:
        value = re.search(r"Unable to load config '([^']*)'", text)
        given = value.group(1) if value else "?"
        return f"--model: expected options such as --model.hidden_size 64 (or a YAML mapping), got {given}"
    given = _given(text)
    subtypes = re.search(r"Subtypes: \[(.*?)\] Errors:", text)
    accepted = _accepted(subtypes.group(1) if subtypes else text)
    if accepted:
        return f"--{key}: {accepted}, got {given}" if given is not None else f"--{key}: {accepted}"
    if key == "config" and "does not exist" in text:
        path = re.search(r"does not exist: '?([^']+)'?", text)
        return f"--config: no such file: {path.group(1) if path else text}"
    return f"--{key}: {text}"


def _nested(key: str, class_name: str, detail: str) -> str:
    """One line for a mistake inside the options of the class given to ``--key``."""
    detail = re.split(r" - (?:Expected a <class 'NoneType'>|Import path|Not a valid subclass)", detail)[0]
    option = re.match(r"Option '(\w+)' is not accepted", detail)
    if option:
        return f"--{key}.{option.group(1)}: not an option of {class_name} (see --{key}.help {class_name})"
    required = re.match(r"the following arguments are required: ([\w, ]+)", detail)
    if required:
        names = ", ".join(f"--{key}.{name.strip()}" for name in required.group(1).split(","))
        return f"--{key}: {class_name} needs {names}"
    inner = re.match(r'(?:--([\w.]+)|Parser key "([^"]+)"): ?(.*)', detail)
    if inner:
        return _translate(f"{key}.{inner.group(1) or inner.group(2)}", inner.group(3))
    return f"--{key}: {class_name}: {detail}"


def _given(text: str) -> str | None:
    """The value the user gave, as jsonargparse reports it."""
    for pattern in (r"Given value: (.*?)$", r"Got value: (.*?)(?: - |$)", r"Expected a path but (\S+) either"):
        found = re.search(pattern, text)
        if found:
            value = found.group(1).strip()
            nested = re.fullmatch(r"NestedArg\(key='[^']*', val='(.*)'\)", value)
            return nested.group(1) if nested else value
    return None


def _accepted(types: str) -> str:
    """'accepted: a, b, ...' for Literal types, 'expected an integer or null' for plain ones, else ''."""
    values: list[str] = []
    words: list[str] = []
    for literal, plain in re.findall(r"typing\.Literal\[(.*?)\]|<class '([\w.]+)'>", types):
        if literal:
            values += [v.strip().strip("'\"") for v in literal.split(",")]
        elif plain.rsplit(".", 1)[-1] in TYPE_WORDS:
            words.append(TYPE_WORDS[plain.rsplit(".", 1)[-1]])
    if values:
        unique = list(dict.fromkeys(values + (["null"] if "null" in words else [])))
        if len(", ".join(unique)) > LIST_BUDGET:  # too many to show: the canonical names ("16-mixed") first
            unique.sort(key=lambda value: ("-" not in value, len(value)))
        return "accepted: " + _cut_list(unique, LIST_BUDGET)
    if "a number" in words and "an integer" in words:
        words.remove("an integer")
    if words:
        return "expected " + " or ".join(dict.fromkeys(words))
    return ""


def _cut_list(items: list[str], budget: int) -> str:
    """``items`` joined with ', ', cut with ', ...' to stay within ``budget`` characters."""
    shown: list[str] = []
    for item in items:
        if len(", ".join([*shown, item])) > budget:
            return ", ".join([*shown, "..."])
        shown.append(item)
    return ", ".join(shown)


def _lead_with_option(text: str) -> str:
    """Start a message from the code (``model.dropout must be ...``, Lightning's, torch's) with its option."""
    text = re.sub(r"^invalid configuration: ", "", text)
    if text.startswith("--"):
        return text
    own = re.match(r"((?:model|data|trainer|checkpoint|optimizer|lr_scheduler)\.\w+)(\[\d+\])?(=| )(.*)", text)
    if own:
        name, index, _separator, rest = own.groups()
        rest = f"{index} {rest}" if index else rest
        return f"--{name}: {rest}"
    torch_value = re.match(r"Invalid ([\w ]+?): (.*)", text)
    if torch_value and torch_value.group(1) in TORCH_OPTIM_VALUES:
        option = TORCH_OPTIM_VALUES[torch_value.group(1)]
        return f"--optimizer.{option}: invalid {torch_value.group(1)} for torch.optim, got {torch_value.group(2)}"
    for name in re.findall(r"`(\w+)(?:=[^`]*)?`", text):  # Lightning quotes the argument it refuses
        for group, arguments in _lightning_arguments().items():
            if name in arguments:
                return f"--{group}.{name}: {text}"
    group_option = re.match(r"Group '(\w+)' does not accept option '(\w+)'", text)  # a key in a --config file
    if group_option:
        return f"--{group_option.group(1)}.{group_option.group(2)}: unknown option (see --help)"
    unknown = re.match(r"unrecognized arguments: (--[\w.]+)(?:[ =](.*))?", text)
    if unknown:
        return f"{unknown.group(1)}: unknown option (see --help)"
    return text


def _lightning_arguments() -> dict[str, set[str]]:
    """The arguments of ``Trainer`` (``--trainer.<name>``) and ``ModelCheckpoint`` (``--checkpoint.<name>``)."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint

    return {
        group: set(inspect.signature(cls.__init__).parameters) - {"self"}
        for group, cls in (("trainer", Trainer), ("checkpoint", ModelCheckpoint))
    }


def _shorten(text: str) -> str:
    """At most :data:`MAX_LINE` characters: paths after the first lose their folders first, then the end is cut.

    The first path is the one the user typed, so it is kept whole.
    """
    if len(text) > MAX_LINE:
        paths = list(re.finditer(r"(?<![\w.])/(?:[^\s/]+/)+[^\s/]+", text))
        for path in reversed(paths[1:]):
            text = text[: path.start()] + ".../" + path.group(0).rsplit("/", 1)[1] + text[path.end() :]
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3].rstrip() + "..."
