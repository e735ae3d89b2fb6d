"""How much one GraphQL document may ask: its length, tokens and nesting, the depth of its fields,
how many fields it selects and how many of them are aliases.

Every field counts, introspection's ``__schema``/``__type``/``ofType`` included: the stock depth
limiters skip the ``__`` fields, and a nested ``__type { ofType { ofType … } }`` is the classic
way around them. Fragments are expanded where they are spread (each fragment's figures are
worked out once, so a chain of fragments spread twice over cannot make the check itself slow).

The check runs before graphql-core's own validation (:class:`QueryLimits` sets the refusal as
the pre-execution error, which skips it): some of its rules are quadratic in the number of
fields, which is what a 1,000-alias query counts on. The limits are the ``MEMORY_GRAPHQL_*``
settings (:func:`limits_from_settings`).
"""
from __future__ import annotations

from dataclasses import dataclass

from graphql import GraphQLError, Lexer, Source, TokenKind, parse
from graphql.language import (
    DocumentNode, FieldNode, FragmentDefinitionNode, FragmentSpreadNode, InlineFragmentNode,
    OperationDefinitionNode, SelectionSetNode,
)
from django.conf import settings
from strawberry.extensions import SchemaExtension

OPENING = {TokenKind.BRACE_L, TokenKind.PAREN_L, TokenKind.BRACKET_L}
CLOSING = {TokenKind.BRACE_R, TokenKind.PAREN_R, TokenKind.BRACKET_R}
# Brackets may nest this much deeper than fields do: arguments' input objects and lists, and
# the types of variables. Bounding the nesting before parsing bounds the parser's recursion.
ARGUMENT_NESTING = 32


@dataclass(frozen=True)
class Limits:
    max_length: int  # characters of the query text
    max_tokens: int
    max_depth: int  # levels of fields
    max_fields: int  # fields selected, fragments expanded: the query's complexity
    max_aliases: int

    @property
    def max_nesting(self) -> int:
        return self.max_depth + ARGUMENT_NESTING


def limits_from_settings() -> Limits:
    """The limits the settings give (read at each request: tests may change them)."""
    return Limits(
        max_length=settings.MEMORY_GRAPHQL_MAX_QUERY_LENGTH,
        max_tokens=settings.MEMORY_GRAPHQL_MAX_TOKENS,
        max_depth=settings.MEMORY_GRAPHQL_MAX_DEPTH,
        max_fields=settings.MEMORY_GRAPHQL_MAX_FIELDS,
        max_aliases=settings.MEMORY_GRAPHQL_MAX_ALIASES,
    )


class QueryRefused(GraphQLError):
    """A document over one of the :class:`Limits`; ``code`` names which."""

    def __init__(self, message: str, code: str):
        super().__init__(message, extensions={"code": code})


def too_deep(limits: Limits) -> QueryRefused:
    return QueryRefused(f"Consulta aninhada demais: o limite é {limits.max_depth} níveis de campos.",
                        "QUERY_TOO_DEEP")


def check_text(query: str, limits: Limits) -> None:
    """``QueryRefused`` when the text is longer, has more tokens or nests brackets deeper than the limits
    allow. The lexer reads one token at a time, without recursion."""
    if len(query) > limits.max_length:
        raise QueryRefused(f"Consulta grande demais: o limite é {limits.max_length} caracteres "
                           f"(recebidos {len(query)}).", "QUERY_TOO_LARGE")
    lexer = Lexer(Source(query))
    tokens = nesting = 0
    while True:
        try:
            token = lexer.advance()
        except GraphQLError:
            return  # the parser reports the syntax error, in its place
        if token.kind == TokenKind.EOF:
            return
        tokens += 1
        if tokens > limits.max_tokens:
            raise QueryRefused(f"Consulta grande demais: o limite é {limits.max_tokens} tokens.", "QUERY_TOO_LARGE")
        if token.kind in OPENING:
            nesting += 1
            if nesting > limits.max_nesting:
                raise too_deep(limits)
        elif token.kind in CLOSING:
            nesting -= 1


@dataclass(frozen=True)
class Figures:
    depth: int
    fields: int
    aliases: int


class _Counter:
    """The figures of a document's operations, each fragment worked out once."""

    def __init__(self, document: DocumentNode, limits: Limits):
        self.limits = limits
        self.fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        self.done: dict[str, Figures] = {}
        self.open: list[str] = []  # fragments being worked out, outermost first

    def selection_set(self, selection_set: SelectionSetNode | None, level: int) -> Figures:
        """The figures of a selection set whose fields sit ``level`` levels deep (1: the root's)."""
        if selection_set is None:
            return Figures(0, 0, 0)
        if level > self.limits.max_depth or len(self.open) > self.limits.max_nesting:
            raise too_deep(self.limits)  # stops the descent: the recursion is bounded by the limits
        depth = fields = aliases = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                below = self.selection_set(selection.selection_set, level + 1)
                depth = max(depth, 1 + below.depth)
                fields += 1 + below.fields
                aliases += (selection.alias is not None) + below.aliases
            elif isinstance(selection, InlineFragmentNode):
                below = self.selection_set(selection.selection_set, level)
                depth, fields, aliases = max(depth, below.depth), fields + below.fields, aliases + below.aliases
            elif isinstance(selection, FragmentSpreadNode):
                below = self.fragment(selection.name.value, level)
                depth, fields, aliases = max(depth, below.depth), fields + below.fields, aliases + below.aliases
            if fields > self.limits.max_fields or aliases > self.limits.max_aliases:
                break  # already over: no need to count the rest
        return Figures(depth, fields, aliases)

    def fragment(self, name: str, level: int) -> Figures:
        """A fragment's figures (its depth relative to where it is spread). An unknown fragment or
        a cycle counts nothing here: graphql-core's validation reports them."""
        if name in self.done:
            found = self.done[name]
            if level - 1 + found.depth > self.limits.max_depth:
                raise too_deep(self.limits)
            return found
        definition = self.fragments.get(name)
        if definition is None or name in self.open:
            return Figures(0, 0, 0)
        self.open.append(name)
        try:
            figures = self.selection_set(definition.selection_set, level)
        finally:
            self.open.pop()
        self.done[name] = figures
        return figures


def check_document(document: DocumentNode, limits: Limits) -> None:
    """``QueryRefused`` when any operation of the document is deeper, selects more fields or more
    aliases than the limits allow."""
    counter = _Counter(document, limits)
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        figures = counter.selection_set(definition.selection_set, 1)
        if figures.depth > limits.max_depth:
            raise too_deep(limits)
        if figures.aliases > limits.max_aliases:
            raise QueryRefused(f"Consulta com apelidos (aliases) demais: o limite é {limits.max_aliases}.",
                               "QUERY_TOO_COMPLEX")
        if figures.fields > limits.max_fields:
            raise QueryRefused(f"Consulta complexa demais: o limite é {limits.max_fields} campos "
                               "(fragmentos contados onde são usados).", "QUERY_TOO_COMPLEX")


def figures_of(query: str, limits: Limits) -> Figures:
    """The deepest operation's figures (for tests and for choosing limits)."""
    document = parse(query)
    counter = _Counter(document, limits)
    found = [counter.selection_set(d.selection_set, 1) for d in document.definitions
             if isinstance(d, OperationDefinitionNode)]
    return Figures(max(f.depth for f in found), sum(f.fields for f in found), sum(f.aliases for f in found))


class QueryLimits(SchemaExtension):
    """The limits as a strawberry extension (one per request, reading the settings): the text
    checked before it is parsed, the document before it is validated."""

    def on_parse(self):
        context = self.execution_context
        if context.query is not None:
            check_text(context.query, limits_from_settings())
        yield

    def on_validate(self):
        context = self.execution_context
        if context.graphql_document is not None and context.pre_execution_errors is None:
            try:
                check_document(context.graphql_document, limits_from_settings())
            except QueryRefused as refused:
                # Set before graphql-core's validation, which then does not run.
                context.pre_execution_errors = [refused]
        yield
