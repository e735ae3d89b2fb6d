"""Writes samples/catalog.csv: 200 realistic products (run: python samples/make_catalog.py).

Deterministic: the same file every run. Most rows have a SKU; some only a
GTIN; some only title and brand; a few GTINs appear twice (the same product
listed by two sellers), and titles carry Portuguese accents.
"""
import csv
import random
from pathlib import Path

CATEGORIES = {
    "Moda": (["Camiseta Básica", "Calça Jeans Slim", "Vestido Midi Floral", "Jaqueta Corta-Vento", "Bermuda de Sarja",
              "Blusa de Tricô", "Meia Esportiva Kit 3 Pares"], ["Hering", "Malwee", "Renner", "Reserva", "Colcci"],
             ["Algodão", "Poliéster", "Linho", "Viscose"]),
    "Eletrônicos": (["Fone Bluetooth", "Carregador Turbo USB-C", "Caixa de Som Portátil", "Smartwatch Esportivo",
                     "Mouse Sem Fio", "Teclado Mecânico", "Webcam Full HD"], ["JBL", "Xiaomi", "Multilaser", "Logitech",
                     "Positivo"], ["Plástico ABS", "Alumínio", "Silicone"]),
    "Casa e Cozinha": (["Panela de Pressão 4,5 L", "Jogo de Facas Inox", "Garrafa Térmica 1 L", "Air Fryer 4 L",
                        "Jogo de Toalhas de Banho", "Organizador de Gavetas", "Caneca Térmica 500 ml"],
                       ["Tramontina", "Mondial", "Electrolux", "Stanley", "Oster"], ["Aço Inox", "Alumínio", "Vidro",
                       "Cerâmica"]),
    "Esporte": (["Tênis de Corrida Leve", "Bola de Futebol Campo", "Tapete de Yoga", "Garrafa Squeeze 750 ml",
                 "Luva de Goleiro", "Corda de Pular com Rolamento"], ["Olympikus", "Penalty", "Mizuno", "Nike",
                 "Adidas"], ["EVA", "Borracha", "Couro Sintético", "Nylon"]),
    "Beleza": (["Protetor Solar FPS 50", "Shampoo Hidratante 300 ml", "Perfume Floral 100 ml", "Creme Hidratante Corporal",
                "Máscara de Cílios à Prova d'Água"], ["Natura", "O Boticário", "Nivea", "Granado", "Eudora"],
               ["Vegano", "Dermatologicamente Testado"]),
    "Brinquedos": (["Quebra-Cabeça 1000 Peças", "Blocos de Montar 500 Peças", "Boneca Articulada", "Carrinho de Controle Remoto",
                    "Jogo de Tabuleiro Família"], ["Estrela", "Grow", "Lego", "Hot Wheels", "Mattel"],
                   ["Plástico Atóxico", "Papelão", "Madeira"]),
    "Pet": (["Ração Premium Cães Adultos 15 kg", "Arranhador para Gatos", "Caminha Pet Média", "Coleira Ajustável",
             "Comedouro Inox Duplo"], ["Pedigree", "Golden", "Premier", "Whiskas"], ["Nylon", "Aço Inox", "Pelúcia"]),
}
COLORS = ["Preto", "Branco", "Azul-Marinho", "Vermelho", "Verde-Musgo", "Cinza", "Rosa", "Bege", "Amarelo"]
SIZES = {"Moda": ["P", "M", "G", "GG"], "Esporte": ["38", "39", "40", "41", "42"]}


def gtin13(rng: random.Random) -> str:
    body = "789" + "".join(str(rng.randint(0, 9)) for _ in range(9))
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


def main() -> None:
    rng = random.Random(20261125)
    rows = []
    for n in range(190):
        category = rng.choice(list(CATEGORIES))
        names, brands, materials = CATEGORIES[category]
        name, brand, color = rng.choice(names), rng.choice(brands), rng.choice(COLORS)
        row = {
            "sku": f"{category[:3].upper().replace('Ô', 'O')}-{n + 1:04d}",
            "gtin": gtin13(rng),
            "title": f"{name} {color}",
            "brand": brand,
            "category": category,
            "color": color,
            "material": rng.choice(materials),
            "size": rng.choice(SIZES.get(category, [""])),
            "price": f"{rng.uniform(19.9, 899.9):.2f}",
        }
        if n % 11 == 3:
            row["sku"] = ""  # identified by GTIN
        if n % 17 == 5:
            row["sku"] = row["gtin"] = ""  # identified by title + brand
        rows.append(row)
    # The same GTIN listed again: identical rows without SKU are one product (one
    # generation); another seller's SKU makes its own entry, as SKU comes first.
    gtin_only = [r for r in rows if not r["sku"] and r["gtin"]]
    rows.extend(dict(r) for r in gtin_only[:6])
    rows.extend({**r, "sku": "LOJA2-" + r["sku"]} for r in rows[20:24])
    path = Path(__file__).with_name("catalog.csv")
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} produtos em {path}")


if __name__ == "__main__":
    main()
