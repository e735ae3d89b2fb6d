"""graphql-core's and strawberry's error messages in pt-BR.

The messages a client meets most (syntax, unknown fields and arguments, missing or ill-typed
values, pagination cursors) are translated whole, their names and values kept; a message not
listed keeps its text behind a pt-BR sentence saying what it is, so a client always learns what
went wrong. Pure: no Django.
"""
from __future__ import annotations

import re

_SUGGESTION = re.compile(r"\s*Did you mean (?P<options>.+)\?$", re.DOTALL)


def _suggestion(options: str) -> str:
    """``'a', 'b', or 'c'`` as ``'a', 'b' ou 'c'``."""
    return " Você quis dizer " + re.sub(r",? or ", " ou ", options) + "?"


# Token descriptions of the parser ("<EOF>", "Name 'x'", "'{'") as a person reads them.
_TOKENS = (
    (re.compile(r"<EOF>"), "o fim da consulta"),
    (re.compile(r"\bName\b"), "nome"),
    (re.compile(r"\bInt\b(?= ')"), "inteiro"),
    (re.compile(r"\bString\b(?= ')"), "texto"),
)


def _token(text: str) -> str:
    for pattern, replacement in _TOKENS:
        text = pattern.sub(replacement, text)
    return text


SYNTAX = (
    (r"Expected (?P<a>.+), found (?P<b>.+)\.", lambda m: f"esperava {_token(m['a'])}, encontrou {_token(m['b'])}."),
    (r"Unexpected (?P<a>.+)\.", lambda m: f"{_token(m['a'])} inesperado."),
    (r"Unterminated string\.", lambda m: "texto sem as aspas de fechamento."),
    (r"Invalid character: (?P<a>.+)\.", lambda m: f"caractere inválido: {m['a']}."),
    (r"Unexpected character: (?P<a>.+)\.", lambda m: f"caractere inesperado: {m['a']}."),
)

MESSAGES = (
    (r"Cannot query field '(?P<f>[^']+)' on type '(?P<t>[^']+)'\.",
     lambda m: f"O campo '{m['f']}' não existe no tipo '{m['t']}'."),
    (r"Unknown argument '(?P<a>[^']+)' on field '(?P<f>[^']+)'\.",
     lambda m: f"O campo '{m['f']}' não tem o argumento '{m['a']}'."),
    (r"Field '(?P<f>[^']+)' argument '(?P<a>[^']+)' of type '(?P<t>[^']+)' is required, but it was not provided\.",
     lambda m: f"O argumento '{m['a']}' (tipo '{m['t']}') do campo '{m['f']}' é obrigatório e não foi informado."),
    (r"Field '(?P<f>[^']+)' must not have a selection since type '(?P<t>[^']+)' has no subfields\.",
     lambda m: f"O campo '{m['f']}' não tem subcampos (tipo '{m['t']}'): tire a seleção entre chaves."),
    (r"Field '(?P<f>[^']+)' of type '(?P<t>[^']+)' must have a selection of subfields\..*",
     lambda m: f"O campo '{m['f']}' (tipo '{m['t']}') exige uma seleção de subcampos: {m['f']} {{ ... }}."),
    (r"Variable '\$(?P<v>[^']+)' of required type '(?P<t>[^']+)' was not provided\.",
     lambda m: f"A variável '${m['v']}' (tipo obrigatório '{m['t']}') não foi informada."),
    (r"Variable '\$(?P<v>[^']+)' of non-null type '(?P<t>[^']+)' must not be null\.",
     lambda m: f"A variável '${m['v']}' (tipo '{m['t']}') não pode ser nula."),
    (r"Variable '\$(?P<v>[^']+)' has invalid value: (?P<why>.+)",
     lambda m: f"A variável '${m['v']}' tem um valor inválido: {_inner(m['why'])}"),
    (r"Variable '\$(?P<v>[^']+)' got invalid value (?P<value>.+?); (?P<why>.+)",
     lambda m: f"A variável '${m['v']}' recebeu um valor inválido ({m['value']}): {_inner(m['why'])}"),
    (r"Variable '\$(?P<v>[^']+)' is not defined(?: by operation '(?P<o>[^']+)')?\.",
     lambda m: f"A variável '${m['v']}' não foi declarada" + (f" na operação '{m['o']}'." if m['o'] else ".")),
    (r"Variable '\$(?P<v>[^']+)' is never used(?: in operation '(?P<o>[^']+)')?\.",
     lambda m: f"A variável '${m['v']}' foi declarada e não é usada."),
    (r"Variable '\$(?P<v>[^']+)' of type '(?P<t>[^']+)' used in position expecting type '(?P<e>[^']+)'\.",
     lambda m: f"A variável '${m['v']}' é do tipo '{m['t']}', mas ali se espera o tipo '{m['e']}'."),
    (r"Expected value of type '(?P<t>[^']+)', found (?P<v>.+?)(?:; (?P<why>.+))?",
     lambda m: f"Esperava um valor do tipo '{m['t']}', recebeu {m['v']}"
               + (f": {_inner(m['why'])}" if m['why'] else ".")),
    (r"Expected value of type '(?P<t>[^']+)', but encountered error '(?P<why>.+)'; found: (?P<v>.+?)\.",
     lambda m: f"Esperava um valor do tipo '{m['t']}', recebeu {m['v']}: {_inner(m['why'])}"),
    (r"Value cannot represent a (?P<t>DateTime|Date|Time): (?P<v>.+?)\. (?P<why>.+)",
     lambda m: f"{m['t']} inválido ({m['v']}): use ISO 8601, como 2026-12-01T12:00:00Z."),
    (r"Expected type '(?P<t>[^']+)'\. (?P<why>.+)", lambda m: f"Esperava o tipo '{m['t']}': {_inner(m['why'])}"),
    (r"Value '(?P<v>[^']+)' does not exist in '(?P<e>[^']+)' enum\.",
     lambda m: f"O valor '{m['v']}' não existe no enum '{m['e']}'."),
    (r"Enum '(?P<e>[^']+)' cannot represent non-enum value: (?P<v>.+?)\.",
     lambda m: f"O enum '{m['e']}' não aceita o valor {m['v']} (use um dos nomes do enum, sem aspas)."),
    (r"Int cannot represent non-integer value: (?P<v>.+)", lambda m: f"Int não aceita o valor não inteiro {m['v']}."),
    (r"Int cannot represent non 32-bit signed integer value: (?P<v>.+)",
     lambda m: f"Int aceita inteiros de 32 bits com sinal, não {m['v']}."),
    (r"Float cannot represent non numeric value: (?P<v>.+)", lambda m: f"Float não aceita o valor não numérico {m['v']}."),
    (r"String cannot represent a non string value: (?P<v>.+)", lambda m: f"String não aceita o valor {m['v']}, que não é texto."),
    (r"Boolean cannot represent a non boolean value: (?P<v>.+)", lambda m: f"Boolean aceita true ou false, não {m['v']}."),
    (r"ID cannot represent a non-string and non-integer value: (?P<v>.+)",
     lambda m: f"ID aceita texto ou inteiro, não {m['v']}."),
    (r"Field '(?P<f>[^']+)' is not defined by type '(?P<t>[^']+)'\.",
     lambda m: f"O tipo '{m['t']}' não tem o campo '{m['f']}'."),
    (r"Field '(?P<f>[^']+)' of required type '(?P<t>[^']+)' was not provided\.",
     lambda m: f"O campo '{m['f']}' (tipo obrigatório '{m['t']}') não foi informado."),
    (r"Unknown fragment '(?P<n>[^']+)'\.", lambda m: f"O fragmento '{m['n']}' não foi definido."),
    (r"Fragment '(?P<n>[^']+)' is never used\.", lambda m: f"O fragmento '{m['n']}' foi definido e não é usado."),
    (r"Cannot spread fragment '(?P<n>[^']+)' within itself.*", lambda m: f"O fragmento '{m['n']}' se inclui a si mesmo."),
    (r"Unknown type '(?P<n>[^']+)'\.", lambda m: f"O tipo '{m['n']}' não existe."),
    (r"Unknown directive '@(?P<n>[^']+)'\.", lambda m: f"A diretiva '@{m['n']}' não existe."),
    (r"Unknown operation named '(?P<n>[^']+)'\.", lambda m: f"Não há operação chamada '{m['n']}' na consulta."),
    (r"Must provide operation name if query contains multiple operations\.",
     lambda m: "A consulta tem várias operações: informe operationName."),
    (r"This anonymous operation must be the only defined operation\.",
     lambda m: "Uma operação sem nome deve ser a única da consulta."),
    (r"There can be only one (?P<what>argument|variable|fragment|operation) named '(?P<n>[^']+)'\.",
     lambda m: f"O nome '{m['n']}' se repete ({_WHAT[m['what']]}); cada um só pode aparecer uma vez."),
    (r"Fields '(?P<n>[^']+)' conflict because (?P<why>.+)",
     lambda m: f"Os campos '{m['n']}' conflitam (mesmo nome na resposta, seleções diferentes): use apelidos distintos."),
    (r"Invalid cursor", lambda m: "Cursor inválido: use um startCursor ou endCursor devolvido por esta consulta."),
    (r"Argument '(?P<a>first|last)' must be a non-negative integer\.",
     lambda m: f"O argumento '{m['a']}' não pode ser negativo."),
    (r"Argument '(?P<a>first|last)' cannot be higher than (?P<n>\d+)\.",
     lambda m: f"O argumento '{m['a']}' vai até {m['n']}."),
    (r"(?P<op>queries|mutations|subscriptions) are not allowed",
     lambda m: "Mutações só por POST." if m['op'] == "mutations" else f"Operação não permitida aqui ({m['op']})."),
    (r"Unsupported operation type '?(?P<op>\w+)'?.*", lambda m: "Operação não permitida aqui."),
)
def _inner(text: str) -> str:
    """A message inside another: translated when listed, else as it is (ours are pt-BR already)."""
    translated = translate(text)
    return text.strip() if translated == f"{UNKNOWN}{text.strip()}" else translated


UNKNOWN = "Consulta inválida: "
_WHAT = {"argument": "argumento", "variable": "variável", "fragment": "fragmento", "operation": "operação"}

_SYNTAX = [(re.compile(p, re.DOTALL), f) for p, f in SYNTAX]
_MESSAGES = [(re.compile(p, re.DOTALL), f) for p, f in MESSAGES]


def translate(message: str) -> str:
    """``message`` in pt-BR; one not listed as "Consulta inválida: <message>"."""
    for pattern, render in _MESSAGES:  # a few say what they suggest themselves
        matched = pattern.fullmatch(message.strip())
        if matched and _SUGGESTION.search(message):
            return render(matched)
    suggestion = ""
    found = _SUGGESTION.search(message)
    if found:
        suggestion = _suggestion(found["options"])
        message = message[:found.start()]
    message = message.strip()
    if message.startswith("Syntax Error: "):
        description = message.removeprefix("Syntax Error: ")
        for pattern, render in _SYNTAX:
            matched = pattern.fullmatch(description)
            if matched:
                return f"Erro de sintaxe na consulta: {render(matched)}{suggestion}"
        return f"Erro de sintaxe na consulta: {description}{suggestion}"
    for pattern, render in _MESSAGES:
        matched = pattern.fullmatch(message)
        if matched:
            return f"{render(matched)}{suggestion}"
    return f"{UNKNOWN}{message}{suggestion}"
