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


# answers to some of TASKS, in each language of the task: an answer in another language than its instruction drifted
ANSWERS: tuple[tuple[int, dict[str, str]], ...] = (
    (
        1,
        {
            "en": "A list is mutable: you can append, remove or change its items after you create it. A tuple is "
            "immutable, so once it exists its items stay as they are.\n\nUse a list for a collection that grows, such "
            "as the lines you read from a file. Use a tuple for a fixed record, such as the coordinates of a point, "
            "which can also serve as a dictionary key.",
            "fr": "Une liste est modifiable : on peut ajouter, retirer ou changer ses éléments après sa création. Un "
            "tuple est immuable, ses éléments restent donc tels qu'ils sont.\n\nUtilise une liste pour une collection "
            "qui grandit, comme les lignes lues dans un fichier. Utilise un tuple pour un enregistrement fixe, comme les "
            "coordonnées d'un point, qui peut aussi servir de clé de dictionnaire.",
            "es": "Una lista es mutable: puedes añadir, quitar o cambiar sus elementos después de crearla. Una tupla es "
            "inmutable, así que sus elementos se quedan como están.\n\nUsa una lista para una colección que crece, como "
            "las líneas que lees de un archivo. Usa una tupla para un registro fijo, como las coordenadas de un punto, "
            "que además puede servir como clave de un diccionario.",
            "pt": "Uma lista é mutável: você pode adicionar, remover ou alterar seus itens depois de criá-la. Uma tupla "
            "é imutável, então seus itens permanecem como estão.\n\nUse uma lista para uma coleção que cresce, como as "
            "linhas que você lê de um arquivo. Use uma tupla para um registro fixo, como as coordenadas de um ponto, "
            "que também pode servir de chave em um dicionário.",
            "de": "Eine Liste ist veränderbar: Du kannst nach dem Erstellen Elemente hinzufügen, entfernen oder ändern. "
            "Ein Tupel ist unveränderlich, seine Elemente bleiben also, wie sie sind.\n\nNimm eine Liste für eine "
            "Sammlung, die wächst, etwa die Zeilen, die du aus einer Datei liest. Nimm ein Tupel für einen festen "
            "Datensatz, etwa die Koordinaten eines Punktes, der auch als Schlüssel in einem Wörterbuch dienen kann.",
        },
    ),
    (
        7,
        {
            "ru": "Солнечный свет состоит из разных цветов. Днём синий свет сильнее всего рассеивается в воздухе, "
            "поэтому небо кажется голубым.\n\nНа закате свет проходит через гораздо более толстый слой воздуха, синий "
            "цвет теряется по дороге, и до нас доходят красные и оранжевые лучи.",
            "uk": "Сонячне світло складається з різних кольорів. Удень синє світло найсильніше розсіюється в повітрі, "
            "тому небо здається блакитним.\n\nНа заході сонця світло проходить крізь набагато товщий шар повітря, синій "
            "колір губиться дорогою, і до нас доходять червоні та помаранчеві промені.",
        },
    ),
    (
        9,
        {
            "zh": "光合作用是植物利用阳光，把二氧化碳和水变成糖和氧气的过程。\n\n比如，窗台上的绿萝白天晒太阳，"
            "叶子就在制造自己需要的养分，同时向房间里释放氧气。",
            "ja": "光合作用とは、植物が日光を使って二酸化炭素と水から糖と酸素を作るはたらきです。\n\nたとえば、"
            "窓辺の観葉植物は昼間に日光を浴びて、自分に必要な養分を作りながら部屋に酸素を出しています。",
        },
    ),
)

# an instruction, its answer in another language, and the conversation before it: the conversation asked for that
# language, so each answer must be kept
ANSWER_LOOKALIKES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "Translate the English sentence into Chinese.\n\nShe went to school on Monday but found no other students, "
        "so she realized that Monday was actually a national holiday.",
        "她周一去了学校，但是却发现没有其他的同学，所以她意识到那个周一其实是国定假日。",
        (),
    ),
    (
        "Write a short poem of four lines about the sea at night, in Spanish, for a child who is afraid of the dark.",
        "El mar de noche canta bajito,\nlas olas te cuentan un cuento bonito.\nLa luna vigila desde su altura,\n"
        "duerme tranquilo, la noche es segura.",
        (),
    ),
    (
        "Correct the grammar of this sentence and give only the corrected sentence: « Hier je suis allé au magasin "
        "avec mon frère et nous avons acheter des pommes rouges. »",
        "Hier, je suis allé au magasin avec mon frère et nous avons acheté des pommes rouges.",
        (),
    ),
    (
        "Reply to this message from my colleague, in the language she wrote it in.\n\nHallo Tom, kannst du mir "
        "bitte bis Freitag den Bericht über die Kundenumfrage schicken? Vielen Dank und schöne Grüße, Anna",
        "Hallo Anna, natürlich schicke ich dir den Bericht über die Kundenumfrage bis Freitag. Viele Grüße, Tom",
        (),
    ),
    (
        "Traduis cette phrase en anglais et explique le choix du temps : « Le chat dort sur le canapé depuis ce "
        "matin. »",
        "The cat has been sleeping on the sofa since this morning. The present perfect continuous carries the "
        "French present with « depuis »: an action that started in the past and is still going on.",
        (),
    ),
    (
        "Now write the same note again, but shorter and a little more formal than the one you wrote before.",
        "Chère Madame Dupont, je vous remercie pour votre invitation et serai heureux d'assister à la réunion de "
        "jeudi prochain.",
        (
            "Écris un petit mot pour remercier ma voisine, Madame Dupont, de son invitation à la réunion de jeudi.",
            "Chère Madame Dupont, merci beaucoup pour votre gentille invitation, je viendrai avec plaisir à la "
            "réunion de jeudi !",
        ),
    ),
    (
        "What does the French expression in this sentence mean, and when would someone use it in a conversation?",
        "The expression is « avoir le cafard », literally « to have the cockroach ». It means to feel down or "
        "homesick, and people use it casually about a gloomy mood: « J'ai le cafard depuis qu'il pleut. »",
        (),
    ),
)


def answer_drifts() -> list[tuple[str, str, str, str]]:
    """(instruction's language, answer's language, instruction, answer) for every ordered pair of a task's answers."""
    return [(a, b, TASKS[n][a], answers[b]) for n, answers in ANSWERS for a in answers for b in answers if a != b]
