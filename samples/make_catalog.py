"""Writes samples/catalog.csv: 200 realistic products (run: python samples/make_catalog.py).

Deterministic: the same file every run. Most products are variants of a family
(``parent_sku``: one model in several colours, sizes, voltages, capacities or
flavours, 2 to 8 variants each, sharing brand, material, price and the title
without the variant's values); the others stand alone. Most rows have a SKU;
some only a GTIN; some only title and brand; a few GTINs appear twice (the same
product listed by two sellers), another seller lists four products under its own
SKUs, and titles carry Portuguese accents.
"""
import csv
import itertools
import random
from collections import Counter
from pathlib import Path

# name -> the variant axes of its families, each a column and its values (none: it stands alone).
COLORS = ["Preto", "Branco", "Azul-Marinho", "Vermelho", "Verde-Musgo", "Cinza", "Rosa", "Bege", "Amarelo"]
CLOTHES = ["P", "M", "G", "GG"]
SHOES = ["38", "39", "40", "41", "42"]
CATEGORIES = {
    "Moda": ({
        "Camiseta Básica": {"color": COLORS, "size": CLOTHES},
        "Calça Jeans Slim": {"color": ["Azul", "Preto", "Cinza"], "size": ["38", "40", "42", "44"]},
        "Vestido Midi Floral": {"color": ["Rosa", "Azul-Marinho", "Amarelo"], "size": CLOTHES},
        "Jaqueta Corta-Vento": {"color": COLORS[:6], "size": CLOTHES},
        "Bermuda de Sarja": {"color": ["Bege", "Preto", "Verde-Musgo"], "size": ["38", "40", "42", "44"]},
        "Blusa de Tricô": {"color": ["Bege", "Cinza", "Rosa", "Vermelho"], "size": CLOTHES},
        "Meia Esportiva Kit 3 Pares": {"color": ["Branco", "Preto", "Cinza"], "size": ["P", "M", "G"]},
    }, ["Hering", "Malwee", "Renner", "Reserva", "Colcci"], ["Algodão", "Poliéster", "Linho", "Viscose"]),
    "Eletrônicos": ({
        "Fone Bluetooth": {"color": ["Preto", "Branco", "Azul-Marinho", "Rosa"]},
        "Carregador Turbo USB-C": {"color": ["Preto", "Branco"]},
        "Caixa de Som Portátil": {"color": ["Preto", "Azul-Marinho", "Vermelho", "Verde-Musgo", "Cinza"]},
        "Smartwatch Esportivo": {"color": ["Preto", "Rosa", "Cinza", "Branco"]},
        "Mouse Sem Fio": {"color": ["Preto", "Branco", "Cinza"]},
        "Teclado Mecânico": {},
        "Webcam Full HD": {},
    }, ["JBL", "Xiaomi", "Multilaser", "Logitech", "Positivo"], ["Plástico ABS", "Alumínio", "Silicone"]),
    "Casa e Cozinha": ({
        "Panela de Pressão 4,5 L": {"color": ["Preto", "Vermelho", "Cinza"]},
        "Jogo de Facas Inox": {},
        "Garrafa Térmica": {"capacity": ["500 ml", "1 L", "1,8 L"], "color": ["Preto", "Branco", "Verde-Musgo"]},
        "Air Fryer 4 L": {"voltage": ["110V", "220V"], "color": ["Preto", "Branco"]},
        "Jogo de Toalhas de Banho": {"color": ["Branco", "Bege", "Cinza", "Azul-Marinho", "Rosa"]},
        "Organizador de Gavetas": {"color": ["Branco", "Cinza"]},
        "Caneca Térmica": {"capacity": ["350 ml", "500 ml"], "color": ["Preto", "Cinza", "Rosa"]},
    }, ["Tramontina", "Mondial", "Electrolux", "Stanley", "Oster"], ["Aço Inox", "Alumínio", "Vidro", "Cerâmica"]),
    "Esporte": ({
        "Tênis de Corrida Leve": {"color": ["Preto", "Branco", "Azul-Marinho", "Cinza"], "size": SHOES},
        "Bola de Futebol Campo": {"color": ["Branco", "Amarelo"]},
        "Tapete de Yoga": {"color": ["Rosa", "Azul-Marinho", "Verde-Musgo", "Cinza"]},
        "Garrafa Squeeze": {"capacity": ["500 ml", "750 ml"], "color": ["Preto", "Vermelho", "Azul-Marinho"]},
        "Luva de Goleiro": {"size": ["7", "8", "9", "10"]},
        "Corda de Pular com Rolamento": {},
    }, ["Olympikus", "Penalty", "Mizuno", "Nike", "Adidas"], ["EVA", "Borracha", "Couro Sintético", "Nylon"]),
    "Beleza": ({
        "Protetor Solar FPS 50": {"capacity": ["120 ml", "200 ml"]},
        "Shampoo Hidratante": {"capacity": ["300 ml", "1 L"]},
        "Perfume Floral": {"capacity": ["50 ml", "100 ml"]},
        "Creme Hidratante Corporal": {"capacity": ["200 ml", "400 ml"]},
        "Máscara de Cílios à Prova d'Água": {"color": ["Preto", "Marrom"]},
    }, ["Natura", "O Boticário", "Nivea", "Granado", "Eudora"], ["Vegano", "Dermatologicamente Testado"]),
    "Brinquedos": ({
        "Quebra-Cabeça 1000 Peças": {},
        "Blocos de Montar 500 Peças": {},
        "Boneca Articulada": {},
        "Carrinho de Controle Remoto": {"color": ["Vermelho", "Azul-Marinho", "Amarelo"]},
        "Jogo de Tabuleiro Família": {},
    }, ["Estrela", "Grow", "Lego", "Hot Wheels", "Mattel"], ["Plástico Atóxico", "Papelão", "Madeira"]),
    "Pet": ({
        "Ração Premium Cães Adultos": {"capacity": ["1 kg", "3 kg", "15 kg"], "flavor": ["Carne", "Frango", "Cordeiro"]},
        "Arranhador para Gatos": {"color": ["Bege", "Cinza"]},
        "Caminha Pet Média": {"color": ["Bege", "Cinza", "Azul-Marinho", "Rosa"]},
        "Coleira Ajustável": {"color": ["Preto", "Vermelho", "Azul-Marinho"], "size": ["P", "M", "G"]},
        "Comedouro Inox Duplo": {},
    }, ["Pedigree", "Golden", "Premier", "Whiskas"], ["Nylon", "Aço Inox", "Pelúcia"]),
}
FIELDS = ["sku", "gtin", "title", "brand", "category", "color", "material", "size", "voltage", "capacity", "flavor",
          "price", "parent_sku"]
VARIANT_COLUMNS = ("color", "size", "voltage", "capacity", "flavor")
ROWS = 190
MAX_VARIANTS = 7  # one more joins a family when another seller lists it: 8 at most


def gtin13(rng: random.Random) -> str:
    body = "789" + "".join(str(rng.randint(0, 9)) for _ in range(9))
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


def product_rows(rng: random.Random) -> list[dict]:
    """190 rows, family by family; a family's variants share everything but their own values."""
    rows: list[dict] = []
    family_number = 0
    while len(rows) < ROWS:
        category = rng.choice(list(CATEGORIES))
        names, brands, materials = CATEGORIES[category]
        name = rng.choice(list(names))
        axes = names[name]
        combos = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
        alone = len(combos) < 2 or rng.random() < 0.08
        count = 1 if alone else min(rng.randint(3, MAX_VARIANTS), len(combos), ROWS - len(rows))
        if count == 1 and not alone:
            alone = True  # the last row left: a product of its own
        family_number += 1
        shared = {"brand": rng.choice(brands), "category": category, "material": rng.choice(materials),
                  "price": f"{rng.uniform(19.9, 899.9):.2f}"}
        parent = "" if alone else f"{category[:3].upper().replace('Ô', 'O')}-F{family_number:03d}"
        picked = rng.sample(combos, count) if combos else [{}]
        if alone and not axes:
            picked = [{"color": rng.choice(COLORS)}]  # a product of its own still has a colour
        for values in picked:
            n = len(rows)
            title = " ".join([name, *values.values()])
            row = {field: "" for field in FIELDS}
            row.update({**shared, **values}, title=title, parent_sku=parent, gtin=gtin13(rng),
                       sku=f"{category[:3].upper().replace('Ô', 'O')}-{n + 1:04d}")
            if n % 11 == 3:
                row["sku"] = ""  # identified by GTIN
            if n % 17 == 5:
                row["sku"] = row["gtin"] = ""  # identified by title + brand
            rows.append(row)
    return rows


def main() -> None:
    rng = random.Random(20261125)
    rows = product_rows(rng)
    # The same GTIN listed again: identical rows without SKU are one product (one
    # generation); another seller's SKU makes its own entry, as SKU comes first.
    gtin_only = [r for r in rows if not r["sku"] and r["gtin"]]
    rows.extend(dict(r) for r in gtin_only[:6])
    # Four products of four families listed by a second seller: one more variant each.
    second_seller, seen = [], set()
    for row in rows[20:]:
        if row["sku"] and row["parent_sku"] and row["parent_sku"] not in seen and len(second_seller) < 4:
            second_seller.append(row)
            seen.add(row["parent_sku"])
    rows.extend({**r, "sku": "LOJA2-" + r["sku"]} for r in second_seller)
    path = Path(__file__).with_name("catalog.csv")
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    products = {r["sku"] or r["gtin"] or (r["title"], r["brand"]): r["parent_sku"] for r in rows}
    families = Counter(parent for parent in products.values() if parent)
    in_families = sum(families.values())
    print(f"{len(rows)} linhas em {path}, {len(products)} produtos: {in_families} em {len(families)} famílias "
          f"(de {min(families.values())} a {max(families.values())} variantes), {len(products) - in_families} avulsos")


if __name__ == "__main__":
    main()
