"""Instructions written in several languages, for ``language_changed``: the same task in each language (so a pair of
them is a rewrite that drifted into another language), and the look-alikes that stay in their parent's language
while they carry text in another one. Written for evol, in the register of real instruction data.
"""

from __future__ import annotations

# each task in every language of its script; a rewrite from one to another is a language change
TASKS: tuple[dict[str, str], ...] = (
    {
        "en": "Write a short story for children about a lighthouse keeper who befriends a seagull during a long winter storm.",
        "fr": "Écris une courte histoire pour enfants sur un gardien de phare qui se lie d'amitié avec une mouette pendant une longue tempête d'hiver.",
        "es": "Escribe un cuento corto para niños sobre un farero que se hace amigo de una gaviota durante una larga tormenta de invierno.",
        "pt": "Escreva um conto curto para crianças sobre um faroleiro que faz amizade com uma gaivota durante uma longa tempestade de inverno.",
        "it": "Scrivi un breve racconto per bambini su un guardiano del faro che fa amicizia con un gabbiano durante una lunga tempesta invernale.",
        "de": "Schreibe eine kurze Geschichte für Kinder über einen Leuchtturmwärter, der sich während eines langen Wintersturms mit einer Möwe anfreundet.",
        "nl": "Schrijf een kort verhaal voor kinderen over een vuurtorenwachter die tijdens een lange winterstorm bevriend raakt met een meeuw.",
    },
    {
        "en": "Explain the difference between a list and a tuple in Python, and give one situation where each is the better choice.",
        "fr": "Explique la différence entre une liste et un tuple en Python, et donne une situation où chacun est le meilleur choix.",
        "es": "Explica la diferencia entre una lista y una tupla en Python, y da una situación en la que cada una sea la mejor opción.",
        "pt": "Explique a diferença entre uma lista e uma tupla em Python, e dê uma situação em que cada uma seja a melhor escolha.",
        "it": "Spiega la differenza tra una lista e una tupla in Python, e fornisci una situazione in cui ciascuna è la scelta migliore.",
        "de": "Erkläre den Unterschied zwischen einer Liste und einem Tupel in Python und nenne eine Situation, in der jeweils eines die bessere Wahl ist.",
        "nl": "Leg het verschil uit tussen een lijst en een tuple in Python, en geef een situatie waarin elk de betere keuze is.",
    },
    {
        "en": "Plan a three-day trip to Lisbon on a budget of 400 euros, with one museum, one day trip and where to eat each evening.",
        "fr": "Prépare un voyage de trois jours à Lisbonne avec un budget de 400 euros, avec un musée, une excursion d'une journée et où manger chaque soir.",
        "es": "Planifica un viaje de tres días a Lisboa con un presupuesto de 400 euros, con un museo, una excursión de un día y dónde cenar cada noche.",
        "pt": "Planeje uma viagem de três dias a Lisboa com um orçamento de 400 euros, com um museu, um passeio de um dia e onde jantar em cada noite.",
        "it": "Organizza un viaggio di tre giorni a Lisbona con un budget di 400 euro, con un museo, una gita di un giorno e dove cenare ogni sera.",
        "de": "Plane eine dreitägige Reise nach Lissabon mit einem Budget von 400 Euro, mit einem Museum, einem Tagesausflug und wo man jeden Abend isst.",
        "nl": "Plan een driedaagse reis naar Lissabon met een budget van 400 euro, met één museum, één dagtocht en waar je elke avond kunt eten.",
    },
    {
        "en": "A farmer has 120 meters of fence and wants to enclose a rectangular field along a river. What dimensions give the largest area, and why?",
        "fr": "Un fermier a 120 mètres de clôture et veut enclore un champ rectangulaire le long d'une rivière. Quelles dimensions donnent la plus grande aire, et pourquoi ?",
        "es": "Un granjero tiene 120 metros de valla y quiere cercar un campo rectangular junto a un río. ¿Qué dimensiones dan la mayor área, y por qué?",
        "pt": "Um agricultor tem 120 metros de cerca e quer cercar um campo retangular ao longo de um rio. Que dimensões dão a maior área, e por quê?",
        "it": "Un contadino ha 120 metri di recinzione e vuole recintare un campo rettangolare lungo un fiume. Quali dimensioni danno l'area più grande, e perché?",
        "de": "Ein Bauer hat 120 Meter Zaun und will ein rechteckiges Feld an einem Fluss einzäunen. Welche Maße ergeben die größte Fläche, und warum?",
        "nl": "Een boer heeft 120 meter hek en wil een rechthoekig veld langs een rivier omheinen. Welke afmetingen geven de grootste oppervlakte, en waarom?",
    },
    {
        "en": "Write a polite email to your landlord asking to repair the heating, which has not worked for a week, and suggest two times for a visit.",
        "fr": "Rédige un courriel poli à ton propriétaire pour lui demander de réparer le chauffage, qui ne fonctionne plus depuis une semaine, et propose deux horaires de visite.",
        "es": "Escribe un correo educado a tu casero pidiéndole que repare la calefacción, que no funciona desde hace una semana, y sugiere dos horarios para una visita.",
        "pt": "Escreva um e-mail educado ao seu senhorio pedindo que conserte o aquecimento, que não funciona há uma semana, e sugira dois horários para uma visita.",
        "it": "Scrivi un'email cortese al tuo padrone di casa chiedendo di riparare il riscaldamento, che non funziona da una settimana, e proponi due orari per una visita.",
        "de": "Schreibe eine höfliche E-Mail an deinen Vermieter mit der Bitte, die Heizung zu reparieren, die seit einer Woche nicht funktioniert, und schlage zwei Termine vor.",
        "nl": "Schrijf een beleefde e-mail aan je huisbaas met het verzoek de verwarming te repareren, die al een week niet werkt, en stel twee tijden voor een bezoek voor.",
    },
    {
        "en": "Summarize the main causes of the French Revolution in five bullet points, each no longer than one sentence.",
        "fr": "Résume les principales causes de la Révolution française en cinq points, chacun ne dépassant pas une phrase.",
        "es": "Resume las principales causas de la Revolución francesa en cinco puntos, cada uno de no más de una frase.",
        "pt": "Resuma as principais causas da Revolução Francesa em cinco tópicos, cada um com no máximo uma frase.",
        "it": "Riassumi le cause principali della Rivoluzione francese in cinque punti, ciascuno non più lungo di una frase.",
        "de": "Fasse die Hauptursachen der Französischen Revolution in fünf Stichpunkten zusammen, jeder nicht länger als ein Satz.",
        "nl": "Vat de belangrijkste oorzaken van de Franse Revolutie samen in vijf opsommingstekens, elk niet langer dan één zin.",
    },
    {
        "ru": "Напиши короткое письмо другу, в котором ты приглашаешь его на день рождения и объясняешь, как добраться до твоего дома.",
        "uk": "Напиши короткого листа другові, у якому ти запрошуєш його на день народження і пояснюєш, як дістатися до твого будинку.",
        "bg": "Напиши кратко писмо до приятел, в което го каниш на рождения си ден и обясняваш как да стигне до дома ти.",
    },
    {
        "ru": "Объясни, почему небо днём голубое, а на закате красное, простыми словами для ученика пятого класса.",
        "uk": "Поясни, чому небо вдень блакитне, а на заході сонця червоне, простими словами для учня п'ятого класу.",
        "bg": "Обясни защо небето през деня е синьо, а при залез е червено, с прости думи за ученик в пети клас.",
    },
    {
        "zh": "请写一封简短的邮件，邀请同事参加下周五的项目总结会议，并说明会议的时间和地点。",
        "ja": "来週の金曜日に行うプロジェクトのまとめ会議に同僚を招待する短いメールを書き、会議の時間と場所を説明してください。",
    },
    {
        "zh": "请用简单的语言解释什么是光合作用，并举一个日常生活中的例子。",
        "ja": "光合作用とは何かを簡単な言葉で説明し、日常生活の中の例を一つ挙げてください。",
    },
)

# rewrites that stay in their parent's language though they carry another one: each must be kept
LOOKALIKES: tuple[tuple[str, str], ...] = (
    (
        "Translate the following sentence into French.",
        "Translate the following paragraph into French, keeping its formal register:\n\n"
        "The committee will meet on Tuesday to review the budget and to vote on the new proposal.",
    ),
    (
        "Translate this text into English.",
        "Translate this text into English, and explain any idiom you had to rephrase:\n\n"
        "Il pleut des cordes depuis ce matin, et mon voisin dit qu'il ne faut pas vendre la peau de l'ours avant "
        "de l'avoir tué.",
    ),
    (
        "Explain when Spanish uses the subjunctive.",
        "Explain when Spanish uses the subjunctive after expressions of doubt, with examples such as "
        '"Dudo que venga mañana" and "No creo que tengan razón", and contrast them with the indicative.',
    ),
    (
        "Correct the grammar of this German sentence.",
        "Correct the grammar of this German sentence and explain each change in English:\n\n"
        "Gestern ich habe gegangen zu der Bahnhof, weil ich wollte den Zug nach Berlin nehmen.",
    ),
    (
        "Escribe una función que invierta una cadena.",
        "Escribe una función en Python que invierta una cadena sin usar slicing, y explica su complejidad.\n\n"
        "```python\ndef reverse_string(text: str) -> str:\n    # the characters in reverse order\n    pass\n```",
    ),
    (
        "Écris un poème sur l'automne.",
        "Écris un poème de quatre strophes sur l'automne, en alexandrins, où chaque strophe évoque un sens "
        "différent : la vue, l'ouïe, l'odorat et le toucher.",
    ),
    (
        "Write a SQL query that lists customers.",
        "Write a SQL query that lists the customers who ordered in each of the last three months, using the "
        "table `clientes(id, nombre, ciudad)` and `pedidos(id, cliente_id, fecha, importe)`.",
    ),
    (
        "Name three famous paintings.",
        "Name three famous paintings from the Prado Museum, such as “Las Meninas” or “El jardín de las delicias”, "
        "and describe what makes each one remarkable.",
    ),
    (
        "Describe the plot of a novel.",
        "Describe the plot of Gabriel García Márquez's novel One Hundred Years of Solitude in about 150 words.",
    ),
)


def drift_pairs() -> list[tuple[str, str, str, str]]:
    """(parent's language, rewrite's language, parent, rewrite) for every ordered pair of languages of a task."""
    return [(a, b, task[a], task[b]) for task in TASKS for a in task for b in task if a != b]
