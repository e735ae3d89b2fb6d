"""``{% load memory_format %}``: the dashboard's numbers by the rules of ``memory.infra.formatting``
(the commands' own), with the separators of the page's language."""
from django import template
from django.utils.formats import get_format

from memory.infra import formatting

register = template.Library()


def _separators() -> formatting.Separators:
    return formatting.Separators(decimal=get_format("DECIMAL_SEPARATOR"), thousands=get_format("THOUSAND_SEPARATOR"))


@register.filter
def count(value):
    """``1.234``."""
    return formatting.integer(value, sep=_separators())


@register.filter
def percent(ratio):
    """A ratio of 0..1: ``42,5%``."""
    return formatting.percent(ratio, sep=_separators())


@register.filter
def money(usd):
    """``US$ 0,0235``."""
    return formatting.money(usd, sep=_separators())


@register.filter
def size(nbytes):
    """``1,0 MB``."""
    return formatting.size(nbytes, sep=_separators())
